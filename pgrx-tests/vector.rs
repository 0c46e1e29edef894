//! pgvector interop: `Vector` as argument and return value, in place, detoasted, across dimensions.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::vector::Vector;
    use approx::assert_relative_eq;
    use pgrx::prelude::*;

    fn f64_of(sql: &str) -> Option<f64> {
        Spi::get_one::<f64>(sql).expect("query runs")
    }

    #[pg_test]
    fn vector_cosine_matches_pgvector_across_dimensions() {
        for dims in [1usize, 3, 128, 384, 1536] {
            let sql = format!(
                "WITH v AS (SELECT array_agg(sin(i)::real)::vector AS a, array_agg(cos(i * 0.7)::real)::vector AS b \
                              FROM generate_series(1, {dims}) i) \
                 SELECT fractality.cosine_similarity(a, b) - (1 - (a <=> b)) FROM v"
            );
            let diff = f64_of(&sql).expect("not null");
            assert!(
                diff.abs() < 1e-5,
                "dims {dims}: differs from pgvector by {diff}"
            );
            let n = Spi::get_one::<i32>(&format!(
                "SELECT fractality.vector_dims_native(array_agg(i::real)::vector) FROM generate_series(1, {dims}) i"
            ))
            .unwrap()
            .unwrap();
            assert_eq!(n as usize, dims);
        }
    }

    #[pg_test]
    fn vector_return_value_round_trips() {
        let v = Spi::get_one::<String>("SELECT fractality.normalize_vector('[3,4]')::text")
            .unwrap()
            .unwrap();
        assert_eq!(v, "[0.6,0.8]");
        // a returned vector is a real pgvector value: pgvector's own operators accept it
        let norm =
            f64_of("SELECT vector_norm(fractality.normalize_vector('[1,2,3,4,5]'))").unwrap();
        assert_relative_eq!(norm, 1.0, epsilon = 1e-6);
    }

    #[pg_test]
    fn vector_reads_toasted_and_short_datums() {
        Spi::run(
            "CREATE TEMP TABLE vt (id int, v vector);
             INSERT INTO vt SELECT 1, array_agg((i % 7)::real)::vector FROM generate_series(1, 2000) i;
             INSERT INTO vt VALUES (2, '[1,2,3]');",
        )
        .unwrap();
        // 2000 floats (8008 bytes) are stored out of line, in the TOAST table: the function
        // receives a TOAST pointer and must detoast it
        let toast = Spi::get_one::<String>(
            "SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = 'vt'::regclass",
        )
        .unwrap()
        .unwrap();
        let chunks = Spi::get_one::<i64>(&format!("SELECT count(*) FROM {toast}"))
            .unwrap()
            .unwrap();
        assert!(chunks > 0, "the 2000-d vector is toasted");
        let dims =
            Spi::get_one::<i32>("SELECT fractality.vector_dims_native(v) FROM vt WHERE id = 1")
                .unwrap()
                .unwrap();
        assert_eq!(dims, 2000);
        let self_sim =
            f64_of("SELECT fractality.cosine_similarity(v, v) FROM vt WHERE id = 1").unwrap();
        assert_relative_eq!(self_sim, 1.0, epsilon = 1e-9);
        // a 3-d vector is stored with a 1-byte header on disk
        let sim = f64_of("SELECT fractality.cosine_similarity(v, '[2,4,6]') FROM vt WHERE id = 2")
            .unwrap();
        assert_relative_eq!(sim, 1.0, epsilon = 1e-9);
    }

    #[pg_test]
    fn vector_plain_datum_is_read_in_place() {
        let built = Vector::from_vec(vec![1.0, 2.0, 3.0]).unwrap();
        let datum = built.to_datum();
        let read = unsafe { Vector::from_datum_ref(datum) }.unwrap();
        assert!(read.is_borrowed());
        assert_eq!(read.as_slice(), &[1.0, 2.0, 3.0]);
        let data_ptr = unsafe { (datum.cast_mut_ptr::<u8>()).add(8) } as *const f32;
        assert_eq!(
            read.as_slice().as_ptr(),
            data_ptr,
            "no copy for a plain datum"
        );
    }

    #[pg_test]
    fn vector_null_gives_null() {
        assert_eq!(
            f64_of("SELECT fractality.cosine_similarity(NULL, '[1,2]')"),
            None
        );
        assert_eq!(
            f64_of("SELECT fractality.cosine_similarity('[0,0]', '[1,2]')"),
            None
        );
    }

    #[pg_test(error = "different vector dimensions 3 and 2")]
    fn vector_dimension_mismatch_is_an_error() {
        f64_of("SELECT fractality.cosine_similarity('[1,2,3]', '[1,2]')");
    }

    #[pg_test(error = "invalid value for vector: a zero vector")]
    fn vector_normalize_zero_is_an_error() {
        Spi::get_one::<String>("SELECT fractality.normalize_vector('[0,0]')::text").unwrap();
    }
}
