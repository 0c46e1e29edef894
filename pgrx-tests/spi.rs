//! The one SPI path: rows streamed to a callback as the executor produces them read the same
//! values as rows copied into a result table first, and a failure while streaming is an ERROR of
//! the calling statement.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::spi::{self, Query};

    /// Rows with every kind of value the readers take: integers, arrays, byteas, NULLs.
    const VALUES: Query<'static> = Query {
        name: "test_values",
        text: "SELECT g::bigint, CASE WHEN g % 3 = 0 THEN NULL ELSE array_fill(g::float8 / 7, ARRAY[g]) END,
                      decode(repeat(lpad(to_hex(g), 2, '0'), 64 * g), 'hex')
                 FROM generate_series(1, $1) g",
        types: &[pg_sys::INT4OID],
        per_tenant: false,
    };

    type Read = (Option<i64>, Option<Vec<f64>>, Option<Vec<u8>>);

    #[pg_test]
    fn streamed_rows_read_what_copied_rows_read() {
        spi::connect(|| {
            let copied: Vec<Read> = spi::rows(&VALUES, &[50i32.into()], true, |r| {
                (r.get::<i64>(1), r.array::<f64>(2), r.get::<Vec<u8>>(3))
            })
            .unwrap();
            let mut streamed: Vec<Read> = Vec::new();
            let mut in_place: Vec<(usize, usize)> = Vec::new();
            let seen = spi::stream(&VALUES, &[50i32.into()], true, |r| {
                streamed.push((r.get::<i64>(1), r.array::<f64>(2), r.get::<Vec<u8>>(3)));
                let floats = r.with_array(2, |a: &[f64]| a.len()).unwrap_or(0);
                let bytes = r.with_bytes(3, |b| b.len()).unwrap_or(0);
                in_place.push((floats, bytes));
            })
            .unwrap();
            assert_eq!(seen, 50);
            assert_eq!(copied.len(), 50);
            assert_eq!(streamed, copied);
            for (g, (floats, bytes)) in (1..=50usize).zip(in_place) {
                assert_eq!(floats, if g % 3 == 0 { 0 } else { g });
                assert_eq!(bytes, 64 * g);
            }
            assert_eq!(copied[2].1, None);
            assert_eq!(copied[6].1.as_ref().map(|a| a[3]), Some(1.0));
            // a column past the row's end reads as NULL
            spi::stream(&VALUES, &[1i32.into()], true, |r| {
                assert_eq!(r.get::<i64>(4), None);
            })
            .unwrap();
        });
    }

    #[pg_test(error = "division by zero")]
    fn an_error_while_streaming_aborts_the_statement() {
        const FAILING: Query<'static> = Query {
            name: "test_failing",
            text: "SELECT 1 / (3 - g) FROM generate_series(1, 5) g",
            types: &[],
            per_tenant: false,
        };
        spi::connect(|| {
            let mut seen = 0;
            let _ = spi::stream(&FAILING, &[], true, |_| seen += 1);
            panic!("the query's error did not stop the statement after {seen} rows");
        });
    }

    #[pg_test(error = "a reader failed on row 2")]
    fn a_panic_in_the_callback_is_an_error_of_the_statement() {
        spi::connect(|| {
            let mut n = 0;
            let _ = spi::stream(&VALUES, &[5i32.into()], true, |_| {
                n += 1;
                if n == 2 {
                    panic!("a reader failed on row {n}");
                }
            });
        });
    }
}
