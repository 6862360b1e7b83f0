//! Every hostile input is refused by the guard, before gobwire decodes it, after a bounded amount
//! of work (the guard counts its steps and estimates gobwire's allocations). Types gobwire
//! recurses through are decoded on 2 MiB stacks, a tokio worker's default, in whatever profile
//! the test is built (a debug build uses several times the stack of a release one).
//!
//! The "raw" numbers in the comments are what gobwire 0.1.0 did with the same bytes unguarded
//! (release build), measured when the guard was written.

#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

mod common;

use common::cases::*;
use common::*;
use plugwire_protocol::gob::gobwire::{self, Dynamic, Interface};
use plugwire_protocol::gob::{DecodeError, GuardError, GuardedDecoder, Limits, StreamGuard};

const STACK: usize = 2 << 20;

/// Decode `case` through the guard on a 2 MiB stack and return the guard's refusal.
fn refused(case: Case) -> GuardError {
    refused_with(case, Limits::default())
}

fn refused_with(case: Case, limits: Limits) -> GuardError {
    let r = on_stack(STACK, move || {
        let s = &case.stream;
        match case.target {
            Target::Dynamic => decode_guarded::<Dynamic>(s, limits).map(|v| v.len()),
            Target::WithIface => decode_guarded::<WithIface>(s, limits).map(|v| v.len()),
            Target::IfaceSlice => {
                decode_guarded::<Vec<Option<Interface>>>(s, limits).map(|v| v.len())
            }
        }
    });
    match r {
        Err(DecodeError::Guard(e)) => e,
        other => panic!("expected the guard to refuse, got {other:?}"),
    }
}

fn accepted<T: gobwire::Decode + Default + Send + 'static>(stream: Vec<u8>) -> Vec<T> {
    on_stack(STACK, move || {
        decode_guarded::<T>(&stream, Limits::default())
    })
    .unwrap_or_else(|e| panic!("refused: {e}"))
}

// ─── problem 1: exponential expansion (raw: n=20 takes 0.7 s and 260 MB, n=24 aborts at 4 GB)

#[test]
fn struct_dag_is_refused_as_too_large() {
    // Below the type-depth limit, so the size is what refuses them.
    for n in [20, 24, 40] {
        for target in [Target::Dynamic, Target::WithIface] {
            let e = refused(struct_dag(n, target));
            assert!(matches!(e, GuardError::TypeTooLarge { .. }), "{n}: {e}");
        }
    }
}

#[test]
fn small_struct_dag_is_accepted() {
    let v = accepted::<WithIface>(struct_dag(8, Target::WithIface).stream);
    assert!(v[0].v.is_some());
}

/// Maps of maps: `Mi = map[M(i-1)]M(i-1)` (raw: n=24 takes 7.5 s and 2.1 GB from 411 bytes).
#[test]
fn map_dag_is_refused_as_too_large() {
    for target in [Target::Dynamic, Target::WithIface] {
        let e = refused(map_dag(24, target));
        assert!(matches!(e, GuardError::TypeTooLarge { .. }), "{e}");
    }
}

/// k mutually recursive structs, each pointing at all: about k! paths (raw: k=10 takes
/// 4.9 s and 970 MB from 974 bytes).
#[test]
fn recursive_clique_is_refused_as_too_large() {
    for target in [Target::Dynamic, Target::WithIface] {
        let e = refused(clique(10, target));
        assert!(matches!(e, GuardError::TypeTooLarge { .. }), "{e}");
    }
}

/// A recursive group of 4,001 types: cheap for gobwire per value, but quadratic to analyse,
/// so the analysis budget stops it.
#[test]
fn huge_recursive_group_exhausts_the_analysis_budget() {
    let e = refused(star(4000));
    assert!(matches!(e, GuardError::AnalysisBudget { .. }), "{e}");
}

// ─── problem 2: deep types (raw: 10,000 nested types overflow a 2 MiB stack and abort)

#[test]
fn slice_chain_is_refused_as_too_deep() {
    for n in [150, 5_000, 9_999] {
        for target in [Target::Dynamic, Target::WithIface] {
            let e = refused(slice_chain(n, target));
            assert!(matches!(e, GuardError::TypeTooDeep { .. }), "{n}: {e}");
        }
    }
}

#[test]
fn map_chain_is_refused_as_too_deep() {
    let e = refused(map_chain(9_999, Target::Dynamic));
    assert!(matches!(e, GuardError::TypeTooDeep { .. }), "{e}");
}

/// Up to the depth limit, a type decodes on a 2 MiB stack, even inside a value nested to
/// gobwire's own depth limit.
#[test]
fn deepest_allowed_type_inside_deepest_value_fits_a_2_mib_stack() {
    // Built from the default limits, so lowering or raising them keeps this test honest: the
    // deepest value the guard lets through must decode (and drop) on a 2 MiB thread, the size
    // of a tokio worker's stack, in the build this test runs in (debug included).
    let limits = Limits::default();
    let type_levels = i64::from(limits.max_type_depth) - 1;
    let mut s = Vec::new();
    slice_def(&mut s, 65, STRING);
    for i in 1..type_levels {
        slice_def(&mut s, 65 + i, 64 + i);
    }
    let deep_ty = 64 + type_levels;
    slice_def(&mut s, 300, INTERFACE);
    // []interface{} nested as deep as allowed (each level costs gobwire two depth units), the
    // innermost holding a value of the deepest type.
    let mut v = vec![0, 1];
    for _ in 0..(limits.max_value_depth / 2 - 6) {
        string(&mut v, "[]interface {}");
        int(&mut v, 300);
        v.extend([0, 0, 1]);
    }
    string(&mut v, "main.L");
    int(&mut v, deep_ty);
    v.extend([0, 0, 0]);
    value(&mut s, 300, &v);
    let r = on_stack(STACK, move || {
        // Dropping the decoded value recurses through it as well.
        decode_guarded::<Dynamic>(&s, limits).map(|v| v.len())
    });
    assert_eq!(r.unwrap(), 1);
}

// ─── problem 3: values over many messages (raw: Go's 4,000-type stream takes 9 s; a 1 MiB
// element followed by 255 new types takes 3.4 s)

#[test]
fn go_stream_with_thousands_of_new_types_is_refused() {
    // Written by Go (a `[]any` holding 1,000 types new to the stream); larger ones behave alike.
    let e = refused(build("go_many_types", 1000).unwrap());
    assert!(matches!(e, GuardError::TooManyMessages { .. }), "{e}");
}

#[test]
fn rescanning_a_big_prefix_is_refused() {
    for m in [16, 255] {
        let e = refused(rescan(1 << 20, m));
        assert!(matches!(e, GuardError::RescanBudget { .. }), "{m}: {e}");
    }
}

#[test]
fn value_split_over_a_few_messages_is_accepted() {
    let v = accepted::<Dynamic>(rescan(1000, 20).stream);
    assert_eq!(v.len(), 1);
}

#[test]
fn total_value_size_is_bounded() {
    let limits = Limits {
        max_value_bytes: 1024,
        ..Limits::default()
    };
    let e = refused_with(rescan(1000, 20), limits);
    assert!(matches!(e, GuardError::ValueTooLarge { .. }), "{e}");
}

// ─── sizes and counts ──────────────────────────────────────────────────────────────────────

#[test]
fn oversized_length_prefixes_are_refused_before_the_body() {
    let mut g = StreamGuard::new(Limits::default());
    for n in [(64 << 20) + 1, 1 << 33, u64::MAX] {
        let mut b = Vec::new();
        uint(&mut b, n);
        let (_, len) = plugwire_protocol::gob::parse_length_prefix(&b)
            .unwrap()
            .unwrap();
        assert_eq!(len, n);
        let e = g.check_length(len).unwrap_err();
        assert!(
            matches!(e, GuardError::MessageTooLarge { .. } | GuardError::Poisoned),
            "{e}"
        );
    }
    assert!(
        plugwire_protocol::gob::parse_length_prefix(&[0xf7, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err()
    );
}

/// The evaluation's "huge counts": lengths of 2^60 in values and definitions.
#[test]
fn huge_declared_lengths_are_refused() {
    let mut cases = Vec::new();
    let mut s = Vec::new();
    slice_def(&mut s, 65, STRING);
    let mut v = vec![0];
    uint(&mut v, 1 << 60);
    string(&mut v, "a");
    value(&mut s, 65, &v);
    cases.push(s);
    let mut s = Vec::new();
    map_def(&mut s, 65, STRING, STRING);
    let mut v = vec![0];
    uint(&mut v, 1 << 60);
    string(&mut v, "k");
    string(&mut v, "v");
    value(&mut s, 65, &v);
    cases.push(s);
    let mut s = Vec::new();
    struct_def(&mut s, 65, "E", &[]);
    slice_def(&mut s, 66, 65);
    let mut v = vec![0];
    uint(&mut v, 1 << 60);
    v.push(0);
    value(&mut s, 66, &v);
    cases.push(s);
    for id in [5, 6] {
        let mut s = Vec::new();
        let mut v = vec![0];
        uint(&mut v, 1 << 60);
        v.extend(b"abc");
        value(&mut s, id, &v);
        cases.push(s);
    }
    let mut s = Vec::new();
    def(
        &mut s,
        65,
        &wire_struct_count(65, "S", &[("A", INT)], 1 << 60),
    );
    cases.push(s);
    // A count of 3 with one field: the rest parse as empty fields (as in gobwire), of type 0.
    let mut s = Vec::new();
    def(&mut s, 65, &wire_struct_count(65, "S", &[("A", INT)], 3));
    value(&mut s, 65, &[0]);
    cases.push(s);
    let mut s = Vec::new();
    def(&mut s, 65, &wire_array(65, INT, 1 << 60));
    let mut v = vec![0];
    uint(&mut v, 1 << 60);
    v.extend([2, 2, 2]);
    value(&mut s, 65, &v);
    cases.push(s);
    for (n, stream) in cases.into_iter().enumerate() {
        let e = refused(Case {
            stream,
            target: Target::Dynamic,
        });
        assert!(
            matches!(
                e,
                GuardError::Malformed { .. }
                    | GuardError::TooManyFields { .. }
                    | GuardError::UndefinedType { id: 0, .. }
            ),
            "case {n}: {e}"
        );
    }
}

/// Wide structs: a 4,000-field struct and 100,000 one-byte values of it (raw: 49 KB of input
/// takes 1.25 GB; 139 KB aborts at 4 GB).
#[test]
fn wide_struct_values_are_refused() {
    let e = refused(wide_values(4000, 100_000));
    assert!(matches!(e, GuardError::ValueExpansion { .. }), "{e}");
}

#[test]
fn wide_struct_definitions_are_refused() {
    let e = refused(wide_def(100_000));
    assert!(matches!(e, GuardError::TooManyFields { .. }), "{e}");
    accepted::<Dynamic>(wide_def(4096).stream);
}

/// Many interface values of one 200-field type (raw: 600 KB takes 4.8 s and 2.4 GB).
#[test]
fn many_interfaces_of_a_big_type_are_refused() {
    for n in [20_000, 100_000] {
        let e = refused(iface_fanout(200, n, Target::IfaceSlice));
        assert!(
            matches!(
                e,
                GuardError::ValueExpansion { .. } | GuardError::ValueReencode { .. }
            ),
            "{e}"
        );
    }
    accepted::<Vec<Option<Interface>>>(iface_fanout(200, 300, Target::IfaceSlice).stream);
}

#[test]
fn type_definition_spam_is_refused() {
    let e = refused(type_spam(20_000));
    assert!(matches!(e, GuardError::TooManyTypes { .. }), "{e}");
    let limits = Limits {
        max_type_bytes: 10_000,
        ..Limits::default()
    };
    let e = refused_with(type_spam(2_000), limits);
    assert!(matches!(e, GuardError::TypeBytes { .. }), "{e}");
}

// ─── nesting of values ─────────────────────────────────────────────────────────────────────

#[test]
fn deep_values_are_refused() {
    for case in [
        deep_struct(100_000),
        iface_chain(100_000, Target::Dynamic),
        iface_chain(300, Target::Dynamic),
    ] {
        let e = refused(case);
        assert!(matches!(e, GuardError::ValueTooDeep { .. }), "{e}");
    }
    // Maps of maps 100,000 deep.
    let mut s = Vec::new();
    map_def(&mut s, 65, STRING, 65);
    let mut v = vec![0];
    for _ in 0..100_000 {
        v.push(1);
        string(&mut v, "k");
    }
    v.push(0);
    value(&mut s, 65, &v);
    let e = refused(Case {
        stream: s,
        target: Target::Dynamic,
    });
    assert!(matches!(e, GuardError::ValueTooDeep { .. }), "{e}");
}

// ─── legitimate recursion ──────────────────────────────────────────────────────────────────

#[derive(plugwire_protocol::gob::gobwire::Gob, Debug, Default, PartialEq)]
struct Node {
    val: i64,
    next: Option<Box<Node>>,
}

#[derive(plugwire_protocol::gob::gobwire::Gob, Debug, Default, PartialEq)]
struct Tree {
    name: String,
    kids: Vec<Tree>,
    parent: Option<Box<Tree>>,
}

#[test]
fn recursive_types_via_pointers_are_accepted() {
    let mut n = Node::default();
    for i in 1..200 {
        n = Node {
            val: i,
            next: Some(Box::new(n)),
        };
    }
    let b = gobwire::Encoder::new().encode(&n).unwrap();
    assert_eq!(accepted::<Node>(b.clone()), [n]);
    assert_eq!(accepted::<Dynamic>(b).len(), 1);

    let leaf = |s: &str| Tree {
        name: s.into(),
        ..Tree::default()
    };
    let t = Tree {
        name: "root".into(),
        kids: vec![leaf("a"), leaf("b")],
        parent: Some(Box::new(leaf("up"))),
    };
    let b = gobwire::Encoder::new().encode(&t).unwrap();
    assert_eq!(accepted::<Tree>(b.clone()), [t]);
    assert_eq!(accepted::<Dynamic>(b).len(), 1);
}

/// `type L []L`, `type M map[string]M`: the guard lets them through (they are small); gobwire
/// refuses them itself.
#[test]
fn recursion_without_a_struct_is_left_to_gobwire() {
    let mut l = Vec::new();
    slice_def(&mut l, 65, 65);
    value(&mut l, 65, &[0, 0]);
    // type M map[string]M, holding {"k": {}}
    let mut m = Vec::new();
    map_def(&mut m, 65, STRING, 65);
    value(&mut m, 65, &[0, 1, 1, b'k', 0]);
    for s in [l, m] {
        let r = decode_guarded::<Dynamic>(&s, Limits::default());
        assert!(
            matches!(&r, Err(DecodeError::Gob(gobwire::Error::Unsupported(_)))),
            "{r:?}"
        );
    }
}

// ─── malformed definitions and values ──────────────────────────────────────────────────────

/// The evaluation's malformed definitions, and a few more.
#[test]
fn malformed_streams_are_refused_with_a_reason() {
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut s = Vec::new();
    slice_def(&mut s, 6, 6);
    cases.push(("definition of a built-in id", s));
    let mut s = Vec::new();
    slice_def(&mut s, 64, 6);
    slice_def(&mut s, 64, 6);
    cases.push(("duplicate definition", s));
    let mut b = Vec::new();
    int(&mut b, i64::MIN);
    b.extend([2, 1, 2, 2, 0, 1, 12, 0, 0]);
    let mut s = Vec::new();
    frame(&mut s, &b);
    cases.push(("type id i64::MIN", s));
    let mut s = Vec::new();
    slice_def(&mut s, 65, 9999);
    value(&mut s, 65, &[0, 1, 0]);
    cases.push(("slice of an undefined type", s));
    let mut s = Vec::new();
    struct_def(&mut s, 65, "S", &[("A", 777)]);
    value(&mut s, 65, &[1, 0, 0]);
    cases.push(("field of an undefined type", s));
    let mut s = Vec::new();
    def(&mut s, 65, &[10, 0]);
    cases.push(("unknown wireType field", s));
    let mut s = Vec::new();
    def(&mut s, 65, &[0]);
    cases.push(("empty wireType", s));
    let mut w = wire_slice(65, 6);
    w.push(7);
    let mut s = Vec::new();
    def(&mut s, 65, &w);
    cases.push(("extra data after a definition", s));
    let mut s = Vec::new();
    value(&mut s, 70, &[0, 1]);
    cases.push(("value of an undefined type", s));
    let mut s = Vec::new();
    frame(&mut s, &[0x0c, 0x00, 0xf0, 1, 2]);
    cases.push(("bad uint width", s));
    let mut s = Vec::new();
    struct_def(&mut s, 65, "S", &[("A", INT)]);
    let mut v = Vec::new();
    uint(&mut v, u64::MAX);
    value(&mut s, 65, &v);
    cases.push(("field delta overflow", s));
    let mut s = Vec::new();
    struct_def(&mut s, 65, "S", &[("A", INT)]);
    value(&mut s, 65, &[5, 2, 0]);
    cases.push(("field delta past the end", s));
    let mut s = Vec::new();
    value(&mut s, 6, &[1, 1, b'a']);
    cases.push(("non-zero singleton delta", s));
    let mut s = Vec::new();
    struct_def(&mut s, 65, "W", &[("V", INTERFACE)]);
    let mut v = vec![1];
    iface(&mut v, &"x".repeat(2000), STRING, &[0, 0]);
    v.push(0);
    value(&mut s, 65, &v);
    cases.push(("interface name of 2000 bytes", s));
    let mut s = Vec::new();
    struct_def(&mut s, 65, "W", &[("V", INTERFACE)]);
    let mut v = vec![1];
    iface(&mut v, "string", 4242, &[0, 0]);
    v.push(0);
    value(&mut s, 65, &v);
    cases.push(("interface of an undefined type", s));
    let mut s = Vec::new();
    def(&mut s, 65, &wire_array(65, INT, 3));
    value(&mut s, 65, &[0, 5, 2, 2, 2, 2, 2]);
    cases.push(("array length mismatch", s));
    let mut s = Vec::new();
    frame(&mut s, &[]);
    cases.push(("empty message", s));
    for (label, stream) in cases {
        let e = refused(Case {
            stream,
            target: Target::Dynamic,
        });
        println!("{label:<32} {e}");
    }
}

/// Go's decoder and gobwire end a struct at the end of a message and ignore bytes after a
/// value; so does the guard, wherever that is safe.
#[test]
fn lenient_endings_are_accepted_as_by_go() {
    let mut s = Vec::new();
    def(&mut s, 65, &wire_slice(65, STRING)[..8]);
    value(&mut s, 65, &[0, 1, 1, b'a']);
    struct_def(&mut s, 66, "S", &[("A", INT)]);
    value(&mut s, 66, &[1, 2]);
    value(&mut s, STRING, &[0, 1, b'a', 0, 0x55]);
    let raw = decode_raw::<Dynamic>(&s).unwrap();
    let guarded = decode_guarded::<Dynamic>(&s, Limits::default()).unwrap();
    assert_eq!(raw.len(), 3);
    assert_eq!(format!("{raw:?}"), format!("{guarded:?}"));
}

/// gobwire ends a struct at the end of its buffer; its buffer grows when a value continues
/// in another message, so an unterminated definition at a message boundary would be re-read
/// differently on the re-scan than when it was checked. The guard requires terminators.
#[test]
fn unterminated_inline_definition_is_refused() {
    let mut s = Vec::new();
    slice_def(&mut s, 65, INTERFACE);
    let mut m1 = Vec::new();
    int(&mut m1, 65);
    m1.extend([0, 1]);
    string(&mut m1, "x");
    int(&mut m1, -100);
    let w = wire_slice(100, STRING);
    m1.extend_from_slice(&w[..w.len() - 2]);
    frame(&mut s, &m1);
    let mut m2 = Vec::new();
    int(&mut m2, 100);
    m2.extend([0, 0, 0]);
    frame(&mut s, &m2);
    let e = refused(Case {
        stream: s,
        target: Target::Dynamic,
    });
    assert!(matches!(e, GuardError::Malformed { .. }), "{e}");
}

#[test]
fn a_failed_stream_stays_failed() {
    let mut g = GuardedDecoder::new(Limits::default());
    assert!(g.push_message(&[0x0c, 0x01]).is_err());
    let r = g.push_message(&[0x0c, 0x00, 0x00]);
    assert!(
        matches!(r, Err(DecodeError::Guard(GuardError::Poisoned))),
        "{r:?}"
    );
}
