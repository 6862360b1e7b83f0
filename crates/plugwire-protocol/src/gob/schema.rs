//! The stream's type table: gob's fixed `wireType` schema parsed without recursion, and the
//! memoised analysis that predicts what gobwire's dynamic decoder will build for each type.

use std::collections::HashMap;
use std::mem::size_of;
use std::sync::Arc;

use super::guard::{GuardError, Limits};

/// Built-in type ids (encoding/gob `type.go`).
pub(crate) mod ids {
    pub(crate) const BOOL: i64 = 1;
    pub(crate) const INT: i64 = 2;
    pub(crate) const UINT: i64 = 3;
    pub(crate) const FLOAT: i64 = 4;
    pub(crate) const BYTES: i64 = 5;
    pub(crate) const STRING: i64 = 6;
    pub(crate) const COMPLEX: i64 = 7;
    pub(crate) const INTERFACE: i64 = 8;
    /// Go and gobwire refuse definitions of ids below this.
    pub(crate) const FIRST_USER: i64 = 64;
}

/// Longest interface name gobwire accepts (its `interface_header`).
pub(crate) const MAX_INTERFACE_NAME: usize = 1024;

/// A broken invariant of the analysis, reported rather than panicking.
const INTERNAL: GuardError = GuardError::Malformed {
    what: "internal error in type analysis",
    at: 0,
};

/// How much of a type name error messages quote.
const QUOTED_NAME: usize = 80;

// ─── reading primitives ────────────────────────────────────────────────────────────────────

/// A cursor over one message body. Every read is bounds-checked against the message.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Primitive reads so far: the unit in which gobwire's re-scan work is measured.
    pub(crate) reads: u64,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            reads: 0,
        }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn malformed(&self, what: &'static str) -> GuardError {
        GuardError::Malformed { what, at: self.pos }
    }

    /// gob's unsigned integer: one byte below 128, else a negated byte count (at most 8) and
    /// the big-endian bytes.
    pub(crate) fn uint(&mut self) -> Result<u64, GuardError> {
        self.reads += 1;
        let Some(&first) = self.buf.get(self.pos) else {
            return Err(self.malformed("unexpected end of message"));
        };
        if first < 0x80 {
            self.pos += 1;
            return Ok(u64::from(first));
        }
        let n = usize::from(first.wrapping_neg());
        if n > 8 {
            return Err(self.malformed("unsigned integer wider than 8 bytes"));
        }
        let Some(bytes) = self.buf.get(self.pos + 1..self.pos + 1 + n) else {
            return Err(self.malformed("unexpected end of message"));
        };
        self.pos += 1 + n;
        Ok(bytes.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
    }

    /// gob's signed integer: bit 0 says whether the rest is complemented.
    pub(crate) fn int(&mut self) -> Result<i64, GuardError> {
        let u = self.uint()?;
        Ok(if u & 1 == 1 {
            !((u >> 1) as i64)
        } else {
            (u >> 1) as i64
        })
    }

    /// A length-prefixed byte string, which must lie inside the message.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], GuardError> {
        let n = self.uint()?;
        if n > self.remaining() as u64 {
            return Err(self.malformed("byte string length exceeds the message"));
        }
        let n = n as usize;
        let b = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }

    fn string(&mut self) -> Result<&'a str, GuardError> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|_| self.malformed("name is not valid UTF-8"))
    }

    /// Before each element of a counted sequence: refuse when the message is exhausted
    /// (gobwire's `expect_element`), so a lying count cannot spin without consuming input.
    pub(crate) fn expect_element(&self) -> Result<(), GuardError> {
        if self.at_end() {
            return Err(self.malformed("element count exceeds the message"));
        }
        Ok(())
    }

    /// The next field number of a struct encoding, or `None` at its terminator.
    ///
    /// Like Go's decoder and gobwire, the end of the message also ends a struct when
    /// `lenient`. Where a value continues in another message (a definition inside an
    /// interface) that would be unsafe: gobwire ends structs at the end of its *buffer*, which
    /// grows when the next message arrives, so its re-scan would read such a definition on into
    /// the next message, differently from how it was checked. There the terminator is
    /// required; Go's encoder always writes it.
    pub(crate) fn next_field(
        &mut self,
        field: &mut i64,
        lenient: bool,
    ) -> Result<Option<u64>, GuardError> {
        if self.at_end() {
            if lenient {
                return Ok(None);
            }
            return Err(self.malformed(
                "definition inside an interface not terminated before the end of the message",
            ));
        }
        let delta = self.uint()?;
        if delta == 0 {
            return Ok(None);
        }
        let next = i64::try_from(delta)
            .ok()
            .and_then(|d| field.checked_add(d))
            .ok_or_else(|| self.malformed("field number out of range"))?;
        *field = next;
        Ok(Some(next as u64))
    }
}

// ─── definitions ───────────────────────────────────────────────────────────────────────────

/// A type reference resolved against the table: a built-in id, or an index into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Builtin(i64),
    User(u32),
}

/// The shape of a defined type. The ids it refers to are in [`Def::refs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `refs = [elem]`.
    Array { len: i64 },
    /// `refs = [elem]`.
    Slice,
    /// `refs = [key, elem]`.
    Map,
    /// `refs` = the field types in order; the field names total `name_bytes`.
    Struct { name_bytes: u64 },
    /// A `GobEncoder`, `BinaryMarshaler` or `TextMarshaler`: an opaque byte string.
    Marshaler,
}

/// What gobwire builds for a type when it decodes it dynamically (`ValueDecoder::dynamic_type`):
/// the depth of its recursion and an estimate of the heap bytes of the tree, which is not
/// shared, so a type used twice is expanded twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Info {
    /// Height of the expanded tree; gobwire recurses once per level.
    pub depth: u64,
    /// Estimated heap bytes of the expanded tree (saturating).
    pub cost: u64,
    /// Estimated bytes gobwire formats to re-encode the tree once (`Interface::downcast`
    /// re-encodes): its `Type::describe` prints every struct's whole subtree with `Debug`, so
    /// this is the sum of the costs of the struct subtrees.
    pub reencode: u64,
}

const BUILTIN_INFO: Info = Info {
    depth: 1,
    cost: 0,
    reencode: 0,
};

/// Per-definition state of the analysis.
#[derive(Debug, Clone, Copy)]
struct Scratch {
    /// Tarjan's visit index and low-link, once visited.
    index: u32,
    low: u32,
    visited: bool,
    on_stack: bool,
    /// Position in the recursive component being expanded, or `u32::MAX`.
    slot: u32,
}

impl Default for Scratch {
    fn default() -> Self {
        Self {
            index: 0,
            low: 0,
            visited: false,
            on_stack: false,
            slot: u32::MAX,
        }
    }
}

/// One type the peer defined.
#[derive(Debug)]
pub(crate) struct Def {
    pub id: i64,
    pub kind: Kind,
    /// Referenced type ids, as received.
    refs: Box<[i64]>,
    /// The same, resolved: set once the type's closure has been analysed.
    pub kids: Option<Arc<[Ty]>>,
    /// The type's name, shortened for messages.
    name: Box<str>,
    name_len: u64,
    pub info: Option<Info>,
    scratch: Scratch,
}

impl Def {
    /// Field count for a struct, 0 otherwise.
    pub(crate) fn field_count(&self) -> usize {
        match self.kind {
            Kind::Struct { .. } => self.refs.len(),
            _ => 0,
        }
    }

    /// Heap bytes gobwire allocates for this node of a dynamic type tree, children excluded:
    /// the `Arc`s, the struct's field vector, and a copy of every name, each allocation with
    /// the allocator's per-chunk overhead.
    fn own_cost(&self) -> u64 {
        // An `Arc` allocation holds two counters before the value.
        const ARC: u64 = 2 * size_of::<usize>() as u64;
        // Per-allocation overhead of a typical malloc (glibc: 8-byte header, 16-byte chunks).
        const CHUNK: u64 = 16;
        let string = |len: u64| if len == 0 { 0 } else { len + CHUNK };
        let boxed_type = ARC + size_of::<gobwire::Type>() as u64 + CHUNK;
        match self.kind {
            Kind::Array { .. } | Kind::Slice => boxed_type,
            Kind::Map => 2 * boxed_type,
            Kind::Struct { name_bytes } => {
                let fields = self.refs.len() as u64;
                let field_vec = if fields == 0 {
                    0
                } else {
                    fields * size_of::<(String, gobwire::Type)>() as u64 + CHUNK
                };
                ARC + size_of::<gobwire::StructType>() as u64
                    + CHUNK
                    + string(self.name_len)
                    + field_vec
                    + name_bytes
                    + fields * CHUNK
            }
            Kind::Marshaler => string(self.name_len),
        }
    }

    pub(crate) fn describe(&self) -> String {
        if self.name.is_empty() {
            let what = match self.kind {
                Kind::Array { .. } => "array",
                Kind::Slice => "slice",
                Kind::Map => "map",
                Kind::Struct { .. } => "struct",
                Kind::Marshaler => "marshaler",
            };
            format!("unnamed {what} type {}", self.id)
        } else {
            format!("{} (type {})", self.name, self.id)
        }
    }
}

/// Parse one `wireType` value, mirroring gobwire's `WireType::decode` field by field: the same
/// field numbers, the first of several inner types kept, unknown fields refused.
///
/// The schema is fixed and four levels deep (wireType → inner type → field list → fieldType),
/// so this needs no recursion. `inline` is set for a definition inside an interface value,
/// which must be explicitly terminated (see [`Cursor::next_field`]).
pub(crate) fn parse_wire_type(
    c: &mut Cursor<'_>,
    id: i64,
    limits: &Limits,
    inline: bool,
) -> Result<Def, GuardError> {
    let lenient = !inline;
    let mut out: Option<(Kind, Vec<i64>, &str)> = None;
    let mut outer = -1;
    while let Some(n) = c.next_field(&mut outer, lenient)? {
        let mut name = "";
        let mut refs = Vec::new();
        let (mut a, mut b) = (0i64, 0i64);
        let mut name_bytes = 0u64;
        let mut inner = -1;
        let unknown = match n {
            0 => "unknown field in arrayType",
            1 => "unknown field in sliceType",
            2 => "unknown field in structType",
            3 => "unknown field in mapType",
            4..=6 => "unknown field in a marshaler type",
            _ => return Err(c.malformed("unknown field in wireType")),
        };
        while let Some(k) = c.next_field(&mut inner, lenient)? {
            match (n, k) {
                (_, 0) => {
                    // CommonType{Name, Id}: the id repeats the message's and is ignored.
                    let mut common = -1;
                    while let Some(j) = c.next_field(&mut common, lenient)? {
                        match j {
                            0 => name = c.string()?,
                            1 => {
                                c.int()?;
                            }
                            _ => return Err(c.malformed("unknown field in CommonType")),
                        }
                    }
                }
                (0 | 1 | 3, 1) => a = c.int()?,
                (0 | 3, 2) => b = c.int()?,
                (2, 1) => {
                    let count = c.uint()?;
                    if count > u64::from(limits.max_struct_fields) {
                        return Err(GuardError::TooManyFields {
                            ty: quoted(name),
                            fields: count,
                            limit: limits.max_struct_fields,
                        });
                    }
                    for _ in 0..count {
                        c.expect_element()?;
                        let (mut fname, mut fid) = ("", 0i64);
                        let mut f = -1;
                        while let Some(j) = c.next_field(&mut f, lenient)? {
                            match j {
                                0 => fname = c.string()?,
                                1 => fid = c.int()?,
                                _ => return Err(c.malformed("unknown field in fieldType")),
                            }
                        }
                        name_bytes += fname.len() as u64;
                        refs.push(fid);
                    }
                }
                _ => return Err(c.malformed(unknown)),
            }
        }
        let (kind, refs) = match n {
            0 => (Kind::Array { len: b }, vec![a]),
            1 => (Kind::Slice, vec![a]),
            2 => (Kind::Struct { name_bytes }, refs),
            3 => (Kind::Map, vec![a, b]),
            _ => (Kind::Marshaler, Vec::new()),
        };
        if out.is_none() {
            out = Some((kind, refs, name));
        }
    }
    let Some((kind, refs, name)) = out else {
        return Err(c.malformed("empty wireType"));
    };
    Ok(Def {
        id,
        kind,
        refs: refs.into_boxed_slice(),
        kids: None,
        name: quoted(name).into_boxed_str(),
        name_len: name.len() as u64,
        info: None,
        scratch: Scratch::default(),
    })
}

/// A name for messages: at most [`QUOTED_NAME`] bytes, cut on a character boundary.
fn quoted(name: &str) -> String {
    if name.len() <= QUOTED_NAME {
        return name.to_owned();
    }
    let mut end = QUOTED_NAME;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &name[..end])
}

/// Ids from 64 below this many more are indexed directly.
const DENSE_IDS: i64 = 1 << 16;

fn dense_slot(id: i64) -> Option<usize> {
    let d = id.checked_sub(ids::FIRST_USER)?;
    (0..DENSE_IDS).contains(&d).then_some(d as usize)
}

// ─── the table ─────────────────────────────────────────────────────────────────────────────

/// Every type the peer has defined on this stream, and what is known about each.
#[derive(Debug, Default)]
pub(crate) struct TypeTable {
    defs: Vec<Def>,
    /// Where each id's definition is: Go numbers types densely from 64, so those ids index a
    /// vector (`u32::MAX` for none); any other id goes through a (flood-resistant) hash map.
    dense: Vec<u32>,
    index: HashMap<i64, u32>,
    /// Bytes of definition messages (and inline definitions) received.
    pub def_bytes: u64,
    /// Steps spent in analysis so far, against [`Limits::analysis_budget`].
    work: u64,
    /// Tarjan visit counter.
    visits: u32,
}

impl TypeTable {
    pub(crate) fn def(&self, i: u32) -> &Def {
        &self.defs[i as usize]
    }

    pub(crate) fn len(&self) -> usize {
        self.defs.len()
    }

    /// Resolve an id found in a value (a top-level or interface type id).
    pub(crate) fn lookup(&self, id: i64) -> Option<Ty> {
        if (ids::BOOL..=ids::INTERFACE).contains(&id) {
            return Some(Ty::Builtin(id));
        }
        let i = match dense_slot(id) {
            Some(d) => *self.dense.get(d)?,
            None => *self.index.get(&id)?,
        };
        (i != u32::MAX).then_some(Ty::User(i))
    }

    pub(crate) fn is_struct(&self, ty: Ty) -> bool {
        matches!(ty, Ty::User(i) if matches!(self.def(i).kind, Kind::Struct { .. }))
    }

    /// Record a definition (gobwire's `TypeTable::define`, plus the guard's stream budgets).
    pub(crate) fn define(
        &mut self,
        def: Def,
        bytes: u64,
        limits: &Limits,
    ) -> Result<(), GuardError> {
        if def.id < ids::FIRST_USER || self.lookup(def.id).is_some() {
            return Err(GuardError::DuplicateType { id: def.id });
        }
        if self.defs.len() >= limits.max_types as usize {
            return Err(GuardError::TooManyTypes {
                limit: limits.max_types,
            });
        }
        self.def_bytes = self.def_bytes.saturating_add(bytes);
        if self.def_bytes > limits.max_type_bytes {
            return Err(GuardError::TypeBytes {
                limit: limits.max_type_bytes,
            });
        }
        let i = self.defs.len() as u32;
        match dense_slot(def.id) {
            Some(d) => {
                if self.dense.len() <= d {
                    self.dense.resize(d + 1, u32::MAX);
                }
                self.dense[d] = i;
            }
            None => {
                self.index.insert(def.id, i);
            }
        }
        self.defs.push(def);
        Ok(())
    }

    /// Analyse a type used as the root of a value (top level or inside an interface) and
    /// check it against the per-type budgets. Its whole closure must be defined, as Go's
    /// encoder guarantees by sending a type's parts before any value of it.
    pub(crate) fn check_root(&mut self, ty: Ty, limits: &Limits) -> Result<Info, GuardError> {
        let Ty::User(i) = ty else {
            return Ok(BUILTIN_INFO);
        };
        let info = match self.def(i).info {
            Some(info) => info,
            None => self.analyse(i, limits)?,
        };
        if info.depth > u64::from(limits.max_type_depth) {
            return Err(GuardError::TypeTooDeep {
                ty: self.def(i).describe(),
                limit: limits.max_type_depth,
            });
        }
        if info.cost > limits.max_type_expansion {
            return Err(GuardError::TypeTooLarge {
                ty: self.def(i).describe(),
                limit: limits.max_type_expansion,
            });
        }
        Ok(info)
    }

    fn step(&mut self, limits: &Limits) -> Result<(), GuardError> {
        self.work += 1;
        let budget = limits.analysis_budget(self.def_bytes);
        if self.work > budget {
            return Err(GuardError::AnalysisBudget { steps: budget });
        }
        Ok(())
    }

    /// Resolve reference `k` of type `i`, or fail if it names no defined type.
    fn kid(&self, i: u32, k: usize) -> Result<Option<Ty>, GuardError> {
        let Some(&id) = self.def(i).refs.get(k) else {
            return Ok(None);
        };
        match self.lookup(id) {
            Some(ty) => Ok(Some(ty)),
            None => Err(GuardError::UndefinedType {
                id,
                referenced_by: Some(self.def(i).describe()),
            }),
        }
    }

    fn scratch(&mut self, i: u32) -> &mut Scratch {
        &mut self.defs[i as usize].scratch
    }

    /// Tarjan's strongly-connected-components algorithm over the not yet analysed part of
    /// `root`'s closure, without recursion. Components complete in reverse topological order,
    /// so each is analysed when everything it refers to outside itself has its [`Info`].
    ///
    /// Each type is visited by one successful run only (it then has its `Info`); a failed run
    /// fails the stream, so the per-definition marks never need resetting.
    fn analyse(&mut self, root: u32, limits: &Limits) -> Result<Info, GuardError> {
        let mut component_stack: Vec<u32> = Vec::new();
        let mut calls: Vec<(u32, usize)> = Vec::new();
        self.visit(root, &mut component_stack, &mut calls);
        while let Some(top) = calls.last_mut() {
            let (v, k) = *top;
            if let Some(ty) = self.kid(v, k)? {
                top.1 += 1;
                self.step(limits)?;
                let Ty::User(w) = ty else { continue };
                if self.def(w).info.is_some() {
                    continue;
                }
                let sw = self.def(w).scratch;
                if !sw.visited {
                    self.visit(w, &mut component_stack, &mut calls);
                } else if sw.on_stack {
                    let sv = self.scratch(v);
                    sv.low = sv.low.min(sw.index);
                }
                continue;
            }
            calls.pop();
            let sv = self.def(v).scratch;
            if let Some(&(parent, _)) = calls.last() {
                let sp = self.scratch(parent);
                sp.low = sp.low.min(sv.low);
            }
            if sv.low == sv.index {
                let at = component_stack
                    .iter()
                    .rposition(|&w| w == v)
                    .ok_or(INTERNAL)?;
                let members = component_stack.split_off(at);
                for &w in &members {
                    self.scratch(w).on_stack = false;
                }
                self.finish_component(&members, limits)?;
            }
        }
        self.def(root).info.ok_or(INTERNAL)
    }

    fn visit(&mut self, v: u32, component_stack: &mut Vec<u32>, calls: &mut Vec<(u32, usize)>) {
        let index = self.visits;
        self.visits += 1;
        *self.scratch(v) = Scratch {
            index,
            low: index,
            visited: true,
            on_stack: true,
            slot: u32::MAX,
        };
        component_stack.push(v);
        calls.push((v, 0));
    }

    /// Give every member of one strongly connected component its resolved references and
    /// its [`Info`].
    fn finish_component(&mut self, members: &[u32], limits: &Limits) -> Result<(), GuardError> {
        for &m in members {
            let kids = (0..self.def(m).refs.len())
                .map(|k| self.kid(m, k)?.ok_or(INTERNAL))
                .collect::<Result<Arc<[Ty]>, _>>()?;
            self.defs[m as usize].kids = Some(kids);
        }
        let &[first, ..] = members else {
            return Err(INTERNAL);
        };
        let recursive = members.len() > 1 || self.kids(first)?.contains(&Ty::User(first));
        if !recursive {
            // Acyclic: the expansion is this node plus each child's, shared or not.
            let def = self.def(first);
            let mut info = Info {
                depth: 1,
                cost: def.own_cost(),
                reencode: 0,
            };
            let is_struct = matches!(def.kind, Kind::Struct { .. });
            for &kid in self.kids(first)? {
                let k = self.info_of(kid)?;
                info.depth = info.depth.max(k.depth.saturating_add(1));
                info.cost = info.cost.saturating_add(k.cost);
                info.reencode = info.reencode.saturating_add(k.reencode);
            }
            if is_struct {
                info.reencode = info.reencode.saturating_add(info.cost);
            }
            self.defs[first as usize].info = Some(info);
            return Ok(());
        }
        for (n, &m) in members.iter().enumerate() {
            self.scratch(m).slot = n as u32;
        }
        let mut on_path = vec![false; members.len()];
        let found: Result<Vec<Info>, GuardError> = members
            .iter()
            .map(|&m| self.expand_recursive(m, &mut on_path, limits))
            .collect();
        for &m in members {
            self.scratch(m).slot = u32::MAX;
        }
        for (&m, info) in members.iter().zip(found?) {
            self.defs[m as usize].info = Some(info);
        }
        Ok(())
    }

    fn kids(&self, i: u32) -> Result<&[Ty], GuardError> {
        self.def(i).kids.as_deref().ok_or(INTERNAL)
    }

    fn info_of(&self, ty: Ty) -> Result<Info, GuardError> {
        match ty {
            Ty::Builtin(_) => Ok(BUILTIN_INFO),
            Ty::User(i) => self.def(i).info.ok_or(INTERNAL),
        }
    }

    /// Replay gobwire's expansion of `root` inside its recursive component: a depth-first walk
    /// that turns a type already on the current path into a leaf (gobwire's `Type::Ref`, or
    /// its "recursive non-struct" error, which costs no more), and takes the memoised
    /// [`Info`] of anything outside the component, whose expansion cannot depend on the path.
    ///
    /// The number of paths can grow exponentially with the component, so the walk stops as
    /// soon as a per-type budget is exceeded (the result then exceeds it too), and every step
    /// counts against the stream's analysis budget.
    ///
    /// `on_path` has one flag per member, all clear; they are clear again on success.
    fn expand_recursive(
        &mut self,
        root: u32,
        on_path: &mut [bool],
        limits: &Limits,
    ) -> Result<Info, GuardError> {
        struct Level {
            ty: u32,
            next_kid: usize,
            cost_at_entry: u64,
        }
        let slot_of = |t: &Self, i: u32| -> Option<usize> {
            let slot = t.def(i).scratch.slot;
            (slot != u32::MAX).then_some(slot as usize)
        };
        *on_path
            .get_mut(slot_of(self, root).ok_or(INTERNAL)?)
            .ok_or(INTERNAL)? = true;
        let mut path = vec![Level {
            ty: root,
            next_kid: 0,
            cost_at_entry: 0,
        }];
        let mut info = Info {
            depth: 1,
            cost: self.def(root).own_cost(),
            reencode: 0,
        };
        while let Some(top) = path.last_mut() {
            let u = top.ty;
            let Some(&kid) = self.kids(u)?.get(top.next_kid) else {
                let entry = top.cost_at_entry;
                path.pop();
                let def = self.def(u);
                on_path[slot_of(self, u).ok_or(INTERNAL)?] = false;
                if matches!(def.kind, Kind::Struct { .. }) {
                    let subtree = info.cost.saturating_sub(entry);
                    info.reencode = info.reencode.saturating_add(subtree);
                }
                continue;
            };
            top.next_kid += 1;
            self.step(limits)?;
            let level = path.len() as u64;
            match kid {
                Ty::User(w) if slot_of(self, w).is_some() => {
                    let slot = slot_of(self, w).ok_or(INTERNAL)?;
                    info.depth = info.depth.max(level + 1);
                    if !on_path[slot] {
                        on_path[slot] = true;
                        path.push(Level {
                            ty: w,
                            next_kid: 0,
                            cost_at_entry: info.cost,
                        });
                        info.cost = info.cost.saturating_add(self.def(w).own_cost());
                    }
                }
                _ => {
                    let k = self.info_of(kid)?;
                    info.depth = info.depth.max(level.saturating_add(k.depth));
                    info.cost = info.cost.saturating_add(k.cost);
                    info.reencode = info.reencode.saturating_add(k.reencode);
                }
            }
            if info.depth > u64::from(limits.max_type_depth)
                || info.cost > limits.max_type_expansion
            {
                break;
            }
        }
        for level in path {
            if let Some(flag) = slot_of(self, level.ty).and_then(|s| on_path.get_mut(s)) {
                *flag = false;
            }
        }
        Ok(info)
    }
}
