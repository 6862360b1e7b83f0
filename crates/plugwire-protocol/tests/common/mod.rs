//! Helpers shared by the tests and examples: fixtures, framing, and a small gob writer for
//! building hostile streams by hand.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

pub mod cases;

use std::path::PathBuf;

use plugwire_protocol::gob::gobwire::{Decode, Decoder, Progress};
use plugwire_protocol::gob::{DecodeError, GuardedDecoder, Limits, parse_length_prefix};

/// The gob test data (`testdata/gob`).
pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/gob")
}

pub fn from_hex(text: &str) -> Vec<u8> {
    let text = text.trim().as_bytes();
    assert!(text.len().is_multiple_of(2), "odd hex length");
    let nibble = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("bad hex digit {c}"),
    };
    text.chunks(2)
        .map(|p| nibble(p[0]) << 4 | nibble(p[1]))
        .collect()
}

pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn read_hex(path: impl AsRef<std::path::Path>) -> Vec<u8> {
    let path = path.as_ref();
    from_hex(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// The Go corpus cases (`corpus/go/*.hex`), sorted by name.
pub fn corpus_cases() -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir().join("go");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".hex").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let b = read_hex(dir.join(format!("{n}.hex")));
            (n, b)
        })
        .collect()
}

/// Split a stream into message bodies.
pub fn messages(mut b: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (w, n) = parse_length_prefix(b).unwrap().expect("complete prefix");
        let n = n as usize;
        out.push(&b[w..w + n]);
        b = &b[w + n..];
    }
    out
}

/// Decode every value of a stream with plain gobwire.
pub fn decode_raw<T: Decode + Default>(stream: &[u8]) -> Result<Vec<T>, gobwire::Error> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    for m in messages(stream) {
        if d.push_message(m)? == Progress::Ready {
            out.push(d.decode()?);
        }
    }
    Ok(out)
}

/// Decode every value of a stream through the guard, framing it the way a transport would:
/// the length prefix is checked before the body is taken.
pub fn decode_guarded<T: Decode + Default>(
    stream: &[u8],
    limits: Limits,
) -> Result<Vec<T>, DecodeError> {
    let mut d = GuardedDecoder::new(limits);
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let (w, n) = parse_length_prefix(rest)?.ok_or(gobwire::Error::UnexpectedEof)?;
        d.check_length(n)?;
        let n = n as usize;
        if rest.len() < w + n {
            return Err(gobwire::Error::UnexpectedEof.into());
        }
        if d.push_message(&rest[w..w + n])? == Progress::Ready {
            out.push(d.decode()?);
        }
        rest = &rest[w + n..];
    }
    Ok(out)
}

// ─── a minimal gob writer ──────────────────────────────────────────────────────────────────

pub fn uint(out: &mut Vec<u8>, u: u64) {
    if u < 0x80 {
        out.push(u as u8);
        return;
    }
    let be = u.to_be_bytes();
    let skip = (u.leading_zeros() / 8) as usize;
    out.push(((8 - skip) as u8).wrapping_neg());
    out.extend_from_slice(&be[skip..]);
}

pub fn int(out: &mut Vec<u8>, i: i64) {
    uint(
        out,
        if i < 0 {
            (!(i as u64)) << 1 | 1
        } else {
            (i as u64) << 1
        },
    );
}

pub fn string(out: &mut Vec<u8>, s: &str) {
    uint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Append `body` with its length prefix.
pub fn frame(out: &mut Vec<u8>, body: &[u8]) {
    uint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// `CommonType{Name, Id}` as the first field of an inner type.
fn common(b: &mut Vec<u8>, name: &str, id: i64) {
    uint(b, 1);
    if name.is_empty() {
        uint(b, 2);
    } else {
        uint(b, 1);
        string(b, name);
        uint(b, 1);
    }
    int(b, id);
    uint(b, 0);
}

/// A `wireType` body (without the leading `-id`).
pub fn wire_slice(id: i64, elem: i64) -> Vec<u8> {
    let mut b = Vec::new();
    uint(&mut b, 2);
    common(&mut b, "", id);
    uint(&mut b, 1);
    int(&mut b, elem);
    b.extend([0, 0]);
    b
}

pub fn wire_array(id: i64, elem: i64, len: i64) -> Vec<u8> {
    let mut b = Vec::new();
    uint(&mut b, 1);
    common(&mut b, "", id);
    uint(&mut b, 1);
    int(&mut b, elem);
    uint(&mut b, 1);
    int(&mut b, len);
    b.extend([0, 0]);
    b
}

pub fn wire_map(id: i64, key: i64, elem: i64) -> Vec<u8> {
    let mut b = Vec::new();
    uint(&mut b, 4);
    common(&mut b, "", id);
    uint(&mut b, 1);
    int(&mut b, key);
    uint(&mut b, 1);
    int(&mut b, elem);
    b.extend([0, 0]);
    b
}

pub fn wire_struct(id: i64, name: &str, fields: &[(&str, i64)]) -> Vec<u8> {
    wire_struct_count(id, name, fields, fields.len() as u64)
}

/// A struct definition whose field list claims `count` entries.
pub fn wire_struct_count(id: i64, name: &str, fields: &[(&str, i64)], count: u64) -> Vec<u8> {
    let mut b = Vec::new();
    uint(&mut b, 3);
    common(&mut b, name, id);
    uint(&mut b, 1);
    uint(&mut b, count);
    for (n, t) in fields {
        uint(&mut b, 1);
        string(&mut b, n);
        uint(&mut b, 1);
        int(&mut b, *t);
        uint(&mut b, 0);
    }
    b.extend([0, 0]);
    b
}

/// A type-definition message for `id`.
pub fn def(out: &mut Vec<u8>, id: i64, wire: &[u8]) {
    let mut b = Vec::new();
    int(&mut b, -id);
    b.extend_from_slice(wire);
    frame(out, &b);
}

pub fn slice_def(out: &mut Vec<u8>, id: i64, elem: i64) {
    def(out, id, &wire_slice(id, elem));
}

pub fn map_def(out: &mut Vec<u8>, id: i64, key: i64, elem: i64) {
    def(out, id, &wire_map(id, key, elem));
}

pub fn struct_def(out: &mut Vec<u8>, id: i64, name: &str, fields: &[(&str, i64)]) {
    def(out, id, &wire_struct(id, name, fields));
}

/// A value message: the type id, then `rest` (which must include the `0` delta of a
/// non-struct value).
pub fn value(out: &mut Vec<u8>, id: i64, rest: &[u8]) {
    let mut b = Vec::new();
    int(&mut b, id);
    b.extend_from_slice(rest);
    frame(out, &b);
}

/// An interface value holding `concrete` (registered as `name`) whose encoded value is
/// `inner` (including the `0` delta of a non-struct value).
pub fn iface(out: &mut Vec<u8>, name: &str, concrete: i64, inner: &[u8]) {
    string(out, name);
    int(out, concrete);
    uint(out, inner.len() as u64);
    out.extend_from_slice(inner);
}

/// Run `f` on a thread with a `stack`-byte stack (2 MiB is a tokio worker's default).
pub fn on_stack<T: Send + 'static>(stack: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}
