//! Hostile gob streams, shared by `tests/hostile.rs` and `examples/hostile.rs`.
#![allow(dead_code)]

use super::*;

pub const BOOL: i64 = 1;
pub const INT: i64 = 2;
pub const STRING: i64 = 6;
pub const INTERFACE: i64 = 8;

/// What a stream is decoded into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `gobwire::Dynamic`.
    Dynamic,
    /// `WithIface { V interface{}; Rest string }`, a typed struct with an interface field.
    WithIface,
    /// `Vec<Option<Interface>>`: a typed `[]interface{}`.
    IfaceSlice,
}

#[derive(gobwire::Gob, Debug, Default)]
pub struct WithIface {
    #[gob(name = "V")]
    pub v: Option<gobwire::Interface>,
    pub rest: String,
}

/// A built case.
pub struct Case {
    pub stream: Vec<u8>,
    pub target: Target,
}

/// Wrap a value of type `top` (whose encoding as an interface's concrete value is `inner`)
/// in `WithIface{V: value}`.
fn in_iface(s: &mut Vec<u8>, top: i64, holder: i64, inner: &[u8]) {
    struct_def(
        s,
        holder,
        "WithIface",
        &[("V", INTERFACE), ("Rest", STRING)],
    );
    let mut v = vec![1];
    iface(&mut v, "main.T", top, inner);
    v.push(0);
    value(s, holder, &v);
}

/// `T0 = struct{X int}`, `Ti = struct{A, B T(i-1)}`: `n` linear definitions, 2^n expansion.
pub fn struct_dag(n: i64, target: Target) -> Case {
    let mut s = Vec::new();
    struct_def(&mut s, 65, "T0", &[("X", INT)]);
    for i in 1..n {
        struct_def(
            &mut s,
            65 + i,
            &format!("T{i}"),
            &[("A", 64 + i), ("B", 64 + i)],
        );
    }
    let top = 64 + n;
    match target {
        Target::Dynamic => value(&mut s, top, &[0]),
        _ => in_iface(&mut s, top, top + 1, &[0]),
    }
    Case { stream: s, target }
}

/// `L0 = []string`, `Li = []L(i-1)`: a chain `n` types deep, then an empty value of the last.
pub fn slice_chain(n: i64, target: Target) -> Case {
    let mut s = Vec::new();
    slice_def(&mut s, 65, STRING);
    for i in 1..n {
        slice_def(&mut s, 65 + i, 64 + i);
    }
    let top = 64 + n;
    match target {
        Target::Dynamic => value(&mut s, top, &[0, 0]),
        _ => in_iface(&mut s, top, top + 1, &[0, 0]),
    }
    Case { stream: s, target }
}

/// `M0 = map[string]int`, `Mi = map[M(i-1)]M(i-1)`: maps of maps, 2^n expansion.
pub fn map_dag(n: i64, target: Target) -> Case {
    let mut s = Vec::new();
    map_def(&mut s, 65, STRING, INT);
    for i in 1..n {
        map_def(&mut s, 65 + i, 64 + i, 64 + i);
    }
    let top = 64 + n;
    match target {
        Target::Dynamic => value(&mut s, top, &[0, 0]),
        _ => in_iface(&mut s, top, top + 1, &[0, 0]),
    }
    Case { stream: s, target }
}

/// `Mi = map[string]M(i-1)`: maps of maps `n` deep.
pub fn map_chain(n: i64, target: Target) -> Case {
    let mut s = Vec::new();
    map_def(&mut s, 65, STRING, INT);
    for i in 1..n {
        map_def(&mut s, 65 + i, STRING, 64 + i);
    }
    let top = 64 + n;
    match target {
        Target::Dynamic => value(&mut s, top, &[0, 0]),
        _ => in_iface(&mut s, top, top + 1, &[0, 0]),
    }
    Case { stream: s, target }
}

/// A struct with `fields` int fields, and a `[]Wide` of `n` empty elements (one byte each).
pub fn wide_values(fields: usize, n: u64) -> Case {
    let names: Vec<String> = (0..fields).map(|i| format!("F{i}")).collect();
    let fs: Vec<(&str, i64)> = names.iter().map(|n| (n.as_str(), INT)).collect();
    let mut s = Vec::new();
    struct_def(&mut s, 65, "Wide", &fs);
    slice_def(&mut s, 66, 65);
    let mut v = vec![0];
    uint(&mut v, n);
    v.resize(v.len() + n as usize, 0);
    value(&mut s, 66, &v);
    Case {
        stream: s,
        target: Target::Dynamic,
    }
}

/// A `[]interface{}` of `n` values of one registered struct with `fields` int fields.
pub fn iface_fanout(fields: usize, n: u64, target: Target) -> Case {
    let names: Vec<String> = (0..fields).map(|i| format!("Field{i}")).collect();
    let fs: Vec<(&str, i64)> = names.iter().map(|n| (n.as_str(), INT)).collect();
    let mut s = Vec::new();
    struct_def(&mut s, 65, "P", &fs);
    slice_def(&mut s, 66, INTERFACE);
    let mut v = vec![0];
    uint(&mut v, n);
    for _ in 0..n {
        iface(&mut v, "p", 65, &[0]);
    }
    value(&mut s, 66, &v);
    Case { stream: s, target }
}

/// `[]interface{}` holding `[]interface{}` holding ... `n` levels, then a string.
pub fn iface_chain(n: usize, target: Target) -> Case {
    let mut s = Vec::new();
    slice_def(&mut s, 65, INTERFACE);
    let mut level = Vec::new();
    string(&mut level, "[]interface {}");
    int(&mut level, 65);
    level.extend([0, 0, 1]); // count (ignored), singleton delta, one element
    let mut v = vec![0, 1];
    for _ in 0..n {
        v.extend_from_slice(&level);
    }
    iface(&mut v, "string", STRING, &[0, 1, b'x']);
    value(&mut s, 65, &v);
    Case { stream: s, target }
}

/// `R struct{Self *R}` nested `n` deep (every struct terminated).
pub fn deep_struct(n: usize) -> Case {
    let mut s = Vec::new();
    struct_def(&mut s, 65, "R", &[("Self", 65)]);
    let mut v = vec![1u8; n];
    v.resize(2 * n + 1, 0);
    value(&mut s, 65, &v);
    Case {
        stream: s,
        target: Target::Dynamic,
    }
}

/// `k` mutually recursive structs, each with a pointer to every one of them: gobwire expands
/// every simple path, about k! of them.
pub fn clique(k: i64, target: Target) -> Case {
    let names: Vec<String> = (0..k).map(|j| format!("P{j}")).collect();
    let mut s = Vec::new();
    for i in 0..k {
        let fs: Vec<(&str, i64)> = (0..k)
            .map(|j| (names[j as usize].as_str(), 65 + j))
            .collect();
        struct_def(&mut s, 65 + i, &format!("S{i}"), &fs);
    }
    match target {
        Target::Dynamic => value(&mut s, 65, &[0]),
        _ => in_iface(&mut s, 65, 65 + k, &[0]),
    }
    Case { stream: s, target }
}

/// A hub struct with `k` fields of `k` leaf structs, each pointing back at the hub: each type
/// expands to about 2k nodes, but there are k+1 of them in one recursive group.
pub fn star(k: i64) -> Case {
    let names: Vec<String> = (0..k).map(|j| format!("L{j}")).collect();
    let fs: Vec<(&str, i64)> = (0..k)
        .map(|j| (names[j as usize].as_str(), 66 + j))
        .collect();
    let mut s = Vec::new();
    struct_def(&mut s, 65, "Hub", &fs);
    for j in 0..k {
        struct_def(&mut s, 66 + j, &format!("Leaf{j}"), &[("H", 65)]);
    }
    value(&mut s, 65, &[0]);
    Case {
        stream: s,
        target: Target::Dynamic,
    }
}

/// A `[]interface{}` whose first element is a `[]int` of `big` ints, followed by `m` values of
/// `m` distinct struct types, each defined inside the value as Go does: the value spans m+1
/// messages and gobwire re-reads the big element for each.
pub fn rescan(big: u64, m: i64) -> Case {
    let mut s = Vec::new();
    slice_def(&mut s, 65, INTERFACE);
    slice_def(&mut s, 66, INT);
    let mut msg = Vec::new();
    int(&mut msg, 65);
    msg.push(0);
    uint(&mut msg, 1 + m as u64);
    let mut ints = vec![0];
    uint(&mut ints, big);
    ints.resize(ints.len() + big as usize, 2);
    iface(&mut msg, "[]int", 66, &ints);
    for j in 0..m {
        let id = 100 + j;
        string(&mut msg, &format!("t{j}"));
        int(&mut msg, -id);
        msg.extend(wire_struct(id, &format!("T{j}"), &[("X", INT)]));
        frame(&mut s, &msg);
        msg.clear();
        int(&mut msg, id);
        msg.extend([1, 0]); // count, empty struct
    }
    frame(&mut s, &msg);
    Case {
        stream: s,
        target: Target::Dynamic,
    }
}

/// `n` one-message slice definitions, then one value.
pub fn type_spam(n: i64) -> Case {
    let mut s = Vec::new();
    for i in 0..n {
        slice_def(&mut s, 65 + i, STRING);
    }
    value(&mut s, 65, &[0, 0]);
    Case {
        stream: s,
        target: Target::Dynamic,
    }
}

/// One struct definition with `fields` fields.
pub fn wide_def(fields: usize) -> Case {
    let names: Vec<String> = (0..fields).map(|i| format!("F{i}")).collect();
    let fs: Vec<(&str, i64)> = names.iter().map(|n| (n.as_str(), INT)).collect();
    let mut s = Vec::new();
    struct_def(&mut s, 65, "Wide", &fs);
    value(&mut s, 65, &[0]);
    Case {
        stream: s,
        target: Target::Dynamic,
    }
}

/// Build a case by name, with its size parameter.
pub fn build(name: &str, n: i64) -> Option<Case> {
    Some(match name {
        "struct_dag" => struct_dag(n, Target::Dynamic),
        "struct_dag_iface" => struct_dag(n, Target::WithIface),
        "slice_chain" => slice_chain(n, Target::Dynamic),
        "slice_chain_iface" => slice_chain(n, Target::WithIface),
        "map_dag" => map_dag(n, Target::Dynamic),
        "map_dag_iface" => map_dag(n, Target::WithIface),
        "map_chain" => map_chain(n, Target::Dynamic),
        "wide_values" => wide_values(4000, n as u64),
        "iface_fanout" => iface_fanout(200, n as u64, Target::IfaceSlice),
        "iface_chain" => iface_chain(n as usize, Target::Dynamic),
        "deep_struct" => deep_struct(n as usize),
        "clique" => clique(n, Target::Dynamic),
        "clique_iface" => clique(n, Target::WithIface),
        "star" => star(n),
        "rescan" => rescan(1 << 20, n),
        "type_spam" => type_spam(n),
        "wide_def" => wide_def(n as usize),
        "go_many_types" => Case {
            stream: read_hex(corpus_dir().join(format!("iface_many_types_{n}.hex"))),
            target: Target::Dynamic,
        },
        _ => return None,
    })
}
