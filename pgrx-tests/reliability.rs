//! Reliability inside the server: a Rust panic inside a native function becomes an ERROR of the
//! statement (SQLSTATE XX000), never a crash of the backend, and what the function wrote before
//! it panicked is rolled back with the statement. The panicking functions below exist only in
//! test builds (schema `tests`), not in the extension's API.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// Panics with `msg`.
    #[pg_extern]
    fn reliability_panic(msg: &str) -> i32 {
        panic!("{msg}")
    }

    /// Writes a node of tenant ...e1 through SPI, then panics (`key` is not a number).
    #[pg_extern]
    fn reliability_panic_after_write(key: &str) -> i32 {
        Spi::run_with_args(
            "INSERT INTO fractality.nodes (user_id, node_key)
             VALUES ('00000000-0000-0000-0000-0000000000e1', $1)",
            &[key.into()],
        )
        .expect("insert");
        key.parse::<i32>().expect("a Rust panic after a write")
    }

    #[pg_test(error = "boom: a Rust panic")]
    fn reliability_a_rust_panic_is_an_error() {
        Spi::run("SELECT tests.reliability_panic('boom: a Rust panic')").unwrap();
    }

    /// Caught in PL/pgSQL (a subtransaction): SQLSTATE XX000 and the panic's message; the
    /// node the function wrote is gone; the backend goes on serving queries.
    #[pg_test]
    fn reliability_a_rust_panic_rolls_back_what_the_function_wrote() {
        Spi::run(
            "CREATE TEMP TABLE caught AS SELECT ''::text AS state, ''::text AS message WITH NO DATA;
             DO $$
             DECLARE s text; m text;
             BEGIN
                 PERFORM tests.reliability_panic_after_write('written-then-panicked');
             EXCEPTION WHEN OTHERS THEN
                 GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, m = MESSAGE_TEXT;
                 INSERT INTO caught VALUES (s, m);
             END $$;",
        )
        .unwrap();
        let (state, message) =
            Spi::get_two::<String, String>("SELECT state, message FROM caught").unwrap();
        assert_eq!(state.as_deref(), Some("XX000"));
        assert!(
            message.unwrap().contains("a Rust panic after a write"),
            "the panic's message is the error's"
        );
        let written = Spi::get_one::<i64>(
            "SELECT count(*) FROM fractality.nodes WHERE node_key = 'written-then-panicked'",
        )
        .unwrap();
        assert_eq!(written, Some(0));
        assert_eq!(Spi::get_one::<i32>("SELECT 1").unwrap(), Some(1));
    }
}
