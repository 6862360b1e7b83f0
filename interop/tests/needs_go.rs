//! Stands in for the interop tests against real Go binaries when the Go fixtures are not built
//! (see `interop/build.rs`), so `cargo test` says what it did not run.

#[cfg(plugwire_no_go)]
#[test]
#[ignore = "the Go fixtures are not built: the interop matrix (tests/matrix.rs) and go-plugin's \
            examples (tests/examples.rs) did not run; `make go-fixtures` or `make test` runs them"]
fn interop_against_go() {}
