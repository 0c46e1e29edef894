// A small deterministic text embedding for the example: no model, no download (the same idea as
// clients/python/embedding.py, not the same numbers). Each word and each of its character
// trigrams gets a fixed pseudo-random direction in 384 dimensions, seeded by a hash of the
// feature; a text is the normalised sum. Texts sharing words point the same way; unrelated texts
// are near orthogonal. To plug in a real model, replace `embed` with one returning a unit vector
// of 384 numbers (e.g. all-MiniLM-L6-v2 through @xenova/transformers' feature-extraction pipeline;
// it gives a Float32Array: return output.data, which Memory writes as it writes an array).
import { createHash } from 'node:crypto';

export const DIMS = 384;
const TRIGRAM_WEIGHT = 0.3;
const STOPWORDS = new Set(('a an and are as at be by does do for from has have i in is it its of on or the to ' +
  'was what when where which who why with you your').split(' '));

// lower-cased words (letters and digits of any script) without stop words, a plural 's' stripped;
// a text of stop words alone keeps them
export function words(text) {
  const found = text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
  if (found.every((w) => STOPWORDS.has(w))) return found;
  return found
    .filter((w) => !STOPWORDS.has(w))
    .map((w) => (w.length > 3 && w.endsWith('s') && !w.endsWith('ss') ? w.slice(0, -1) : w));
}

const directions = new Map();
function direction(feature) {  // 384 standard normal numbers, seeded by the feature
  if (!directions.has(feature)) {
    let seed = createHash('sha256').update(feature).digest().readUInt32LE(0);
    const next = () => {  // mulberry32
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const v = Array.from({ length: DIMS }, () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next()));
    directions.set(feature, v);
  }
  return directions.get(feature);
}

export function embed(text) {
  const features = [];
  for (const w of words(text)) {
    features.push([`w:${w}`, 1]);
    const padded = `#${w}#`;
    for (let i = 0; i + 3 <= padded.length; i++) features.push([`t:${padded.slice(i, i + 3)}`, TRIGRAM_WEIGHT]);
  }
  // no word at all (punctuation, emoji, nothing): the text itself, so that two such texts are not
  // one memory; a zero vector has no direction, so empty text gets one too
  if (features.length === 0) features.push([`s:${text.trim()}`, 1]);
  const v = new Array(DIMS).fill(0);
  for (const [feature, weight] of features) direction(feature).forEach((x, i) => { v[i] += weight * x; });
  const norm = Math.hypot(...v);
  return v.map((x) => x / norm);
}
