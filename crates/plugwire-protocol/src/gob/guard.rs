//! The guard: checks every gob message of one stream before gobwire's decoder sees it.
//!
//! gobwire decodes Go's wire format correctly but trusts the peer's type definitions: its
//! dynamic decoder (`Dynamic`, and every interface value, including `error` fields) expands
//! each type into a tree without sharing, recursing once per level, and re-scans a value from
//! its start each time it continues in another message. [`StreamGuard`] parses the stream
//! itself, keeps the stream's type table, predicts those costs and refuses the message before
//! gobwire would pay them. It never panics and its own work is linear in its input.

use std::mem::size_of;

use super::schema::{Cursor, Kind, MAX_INTERFACE_NAME, Ty, TypeTable, ids, parse_wire_type};

/// Budgets for one stream. [`Limits::default`] suits go-plugin's net/rpc traffic; each field
/// documents why its default is what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest message body, checked on the length prefix before the body is read. Go allows
    /// 8 GiB; 64 MiB is far above what plugin RPCs carry and bounds what one message can
    /// make the reader buffer.
    pub max_message_bytes: u64,
    /// Largest total of the messages making up one value (a value continues in another message
    /// whenever an interface holds a type new to the stream).
    pub max_value_bytes: u64,
    /// Most messages one value may span. Go writes one extra message per type first sent inside
    /// an interface, so legitimate values rarely need more than a handful.
    pub max_value_messages: u32,
    /// gobwire re-scans a value from its first byte every time another message of it arrives;
    /// this bounds the total re-scanned work, in primitive reads (gobwire spends about 30 ns
    /// on each, so the default is roughly a tenth of a second).
    pub max_rescan_work: u64,
    /// Deepest value nesting, in gobwire's units (one per value level; an interface counts
    /// two). Half of gobwire's own [`gobwire::MAX_DEPTH`]: at 256 the deepest value (holding
    /// the deepest type) still decodes and drops on a 2 MiB stack in a debug build, which
    /// gobwire's limit does not. A 200-node linked list fits.
    pub max_value_depth: u32,
    /// Deepest type, as gobwire's dynamic decoder recurses through it. gobwire overflowed a
    /// 2 MiB stack at about 10,000 levels (release); real Go types are rarely more than 10
    /// deep, and 64 leaves room inside the deepest value on a debug build's stack.
    pub max_type_depth: u32,
    /// Most heap bytes (estimated) gobwire may allocate to expand one type for a dynamic
    /// value. 4 MiB is tens of thousands of tree nodes, several orders of magnitude more than
    /// real plugin types need.
    pub max_type_expansion: u64,
    /// Most heap bytes (estimated) gobwire may allocate for one value beyond its value nodes
    /// (a type tree per interface value; a slot per field per struct value in dynamic
    /// values), as a fixed part plus [`Limits::value_expansion_per_byte`] per byte of the
    /// value. The guard cannot tell a typed destination from a dynamic one, so it counts
    /// struct slots for every struct value; the per-byte part keeps that from refusing large
    /// typed values whose fields are really present, while a struct value one byte long that
    /// makes gobwire allocate thousands of slots is refused.
    pub max_value_expansion: u64,
    /// See [`Limits::max_value_expansion`]. gobwire's `Dynamic` values themselves take 30 to
    /// 60 bytes per input byte.
    pub value_expansion_per_byte: u64,
    /// Most bytes (estimated) gobwire formats to re-encode the interface values of one value,
    /// as `Interface::downcast` does (it prints a struct's whole type with `Debug` once per
    /// struct type and again per struct value), as a fixed part plus
    /// [`Limits::value_reencode_per_byte`] per byte of the value. The guard cannot know which
    /// interfaces will be downcast, so it counts all of them. A downcast costs about 5 ns per
    /// estimated byte, so the fixed part is about a tenth of a second.
    pub max_value_reencode: u64,
    /// See [`Limits::max_value_reencode`].
    pub value_reencode_per_byte: u64,
    /// Most fields in one struct definition.
    pub max_struct_fields: u32,
    /// Most types one stream may define. Types live as long as the stream.
    pub max_types: u32,
    /// Most bytes of type definitions one stream may send.
    pub max_type_bytes: u64,
    /// Analysis steps every stream may spend ...
    pub analysis_base: u64,
    /// ... plus this many per byte of type definitions received. Only recursive types can need
    /// more than about one step per referenced type.
    pub analysis_per_byte: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 64 << 20,
            max_value_bytes: 64 << 20,
            max_value_messages: 256,
            max_rescan_work: 4 << 20,
            max_value_depth: 256,
            max_type_depth: 64,
            max_type_expansion: 4 << 20,
            max_value_expansion: 16 << 20,
            value_expansion_per_byte: 64,
            max_value_reencode: 16 << 20,
            value_reencode_per_byte: 16,
            max_struct_fields: 4096,
            max_types: 10_000,
            max_type_bytes: 16 << 20,
            analysis_base: 1 << 20,
            analysis_per_byte: 16,
        }
    }
}

impl Limits {
    pub(crate) fn analysis_budget(&self, def_bytes: u64) -> u64 {
        self.analysis_base
            .saturating_add(self.analysis_per_byte.saturating_mul(def_bytes))
    }
}

/// Why the guard refused a message. After any error the stream is unusable: the guard and
/// gobwire can no longer be assumed to agree on it, so close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
// Each variant's message says what its fields are.
#[allow(missing_docs)]
pub enum GuardError {
    /// A length prefix or body above [`Limits::max_message_bytes`].
    #[error("gob guard: message of {len} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge { len: u64, limit: u64 },
    /// A message with no body; Go never sends one.
    #[error("gob guard: empty message")]
    EmptyMessage,
    /// A value's messages total more than [`Limits::max_value_bytes`].
    #[error("gob guard: value spans more than {limit} bytes")]
    ValueTooLarge { limit: u64 },
    /// A value spans more than [`Limits::max_value_messages`] messages.
    #[error("gob guard: value spans more than {limit} messages")]
    TooManyMessages { limit: u32 },
    /// gobwire's re-scans of a multi-message value would exceed [`Limits::max_rescan_work`].
    #[error(
        "gob guard: value split over many messages would cost more than {limit} reads to re-scan"
    )]
    RescanBudget { limit: u64 },
    /// The bytes do not follow the gob encoding.
    #[error("gob guard: malformed stream: {what} (byte {at} of the message)")]
    Malformed { what: &'static str, at: usize },
    /// A value, or a type used by one, refers to a type id the stream has not defined.
    #[error("gob guard: undefined type {id}{}", referenced_by.as_ref().map(|t| format!(" referenced by {t}")).unwrap_or_default())]
    UndefinedType {
        id: i64,
        referenced_by: Option<String>,
    },
    /// A definition of an id below 64 or of one already defined.
    #[error("gob guard: type {id} defined twice or in the built-in range")]
    DuplicateType { id: i64 },
    /// More than [`Limits::max_types`] definitions on the stream.
    #[error("gob guard: stream defines more than {limit} types")]
    TooManyTypes { limit: u32 },
    /// More than [`Limits::max_type_bytes`] of definitions on the stream.
    #[error("gob guard: stream's type definitions exceed {limit} bytes")]
    TypeBytes { limit: u64 },
    /// A struct definition with more than [`Limits::max_struct_fields`] fields.
    #[error("gob guard: struct type {ty:?} declares {fields} fields, more than {limit}")]
    TooManyFields { ty: String, fields: u64, limit: u32 },
    /// A type's dynamic expansion is deeper than [`Limits::max_type_depth`].
    #[error("gob guard: type {ty} nests deeper than {limit} levels")]
    TypeTooDeep { ty: String, limit: u32 },
    /// A type's dynamic expansion exceeds [`Limits::max_type_expansion`].
    #[error("gob guard: type {ty} expands to more than {limit} bytes in a dynamic value")]
    TypeTooLarge { ty: String, limit: u64 },
    /// A value nests deeper than [`Limits::max_value_depth`].
    #[error("gob guard: value nests deeper than {limit} levels")]
    ValueTooDeep { limit: u32 },
    /// A value's type trees and struct slots exceed its allowance
    /// ([`Limits::max_value_expansion`]).
    #[error(
        "gob guard: value would make the decoder allocate more than {limit} bytes for types and fields"
    )]
    ValueExpansion { limit: u64 },
    /// Re-encoding a value's interfaces would exceed its allowance
    /// ([`Limits::max_value_reencode`]).
    #[error("gob guard: re-encoding the value's interfaces would format more than {limit} bytes")]
    ValueReencode { limit: u64 },
    /// Analysing the stream's (recursive) types took more steps than its budget
    /// ([`Limits::analysis_base`], [`Limits::analysis_per_byte`]).
    #[error("gob guard: type analysis exceeded its budget of {steps} steps")]
    AnalysisBudget { steps: u64 },
    /// An earlier message already failed; the stream cannot be used further.
    #[error("gob guard: stream already failed")]
    Poisoned,
}

/// What a checked message does, in the same terms as gobwire's [`gobwire::Progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A type definition outside any value.
    TypeDefinition(i64),
    /// A value began or continued and needs the next message.
    NeedMore,
    /// A value is complete.
    Complete,
}

impl Verdict {
    /// Whether gobwire reached the same conclusion about the same message.
    #[must_use]
    pub fn agrees_with(self, progress: gobwire::Progress) -> bool {
        use gobwire::Progress as P;
        match (self, progress) {
            (Verdict::TypeDefinition(a), P::TypeDefinition(b)) => a == b,
            (Verdict::NeedMore, P::NeedMore) | (Verdict::Complete, P::Ready) => true,
            _ => false,
        }
    }
}

/// Parse a message's length prefix from the front of `buf`: `Ok(None)` while the prefix is
/// incomplete, else its width and the body length it announces. Check the length with
/// [`StreamGuard::check_length`] before reading the body.
///
/// # Errors
///
/// [`GuardError::Malformed`] if the prefix claims more than eight bytes.
pub fn parse_length_prefix(buf: &[u8]) -> Result<Option<(usize, u64)>, GuardError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first < 0x80 {
        return Ok(Some((1, u64::from(first))));
    }
    let n = usize::from(first.wrapping_neg());
    if n > 8 {
        return Err(GuardError::Malformed {
            what: "length prefix wider than 8 bytes",
            at: 0,
        });
    }
    Ok(buf.get(1..=n).map(|b| {
        let len = b.iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x));
        (1 + n, len)
    }))
}

/// One pending step of the value walk.
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// A value of this type comes next.
    Value(Ty),
    /// The rest of a slice or array.
    Elems { elem: Ty, left: u64 },
    /// The rest of a map.
    Pairs { key: Ty, elem: Ty, left: u64 },
    /// The rest of a struct value of type `def`.
    Struct { def: u32, field: i64 },
    /// An interface's type sequence (definitions, then the concrete type id).
    IfaceTypes,
    /// An interface whose concrete value is being walked above this frame.
    IfaceValue,
}

/// A value that has begun but not ended.
#[derive(Debug, Default)]
struct ValueState {
    frames: Vec<Frame>,
    /// Container frames on the stack: the nesting depth of the next value, less one.
    containers: u32,
    bytes: u64,
    messages: u32,
    /// Primitive reads of the value so far: what one gobwire re-scan of it costs.
    reads: u64,
    rescanned: u64,
    expansion: u64,
    reencode: u64,
    /// Interfaces enclosing the current position.
    ifaces: u32,
}

impl ValueState {
    /// Check the value's expansion so far against its budgets, which grow with its size.
    fn check(&self, limits: &Limits) -> Result<(), GuardError> {
        let allowance =
            |fixed: u64, per_byte: u64| fixed.saturating_add(per_byte.saturating_mul(self.bytes));
        let limit = allowance(limits.max_value_expansion, limits.value_expansion_per_byte);
        if self.expansion > limit {
            return Err(GuardError::ValueExpansion { limit });
        }
        let limit = allowance(limits.max_value_reencode, limits.value_reencode_per_byte);
        if self.reencode > limit {
            return Err(GuardError::ValueReencode { limit });
        }
        Ok(())
    }
}

/// Every type a value can reach is analysed (and resolved) with the value's root type before
/// the walk gets to it; this error would mean otherwise.
const UNANALYSED: GuardError = GuardError::Malformed {
    what: "internal error: type reached before its analysis",
    at: 0,
};

/// Heap bytes gobwire allocates for an interface value beyond its concrete type tree.
const INTERFACE_COST: u64 = size_of::<gobwire::Interface>() as u64;
/// Heap bytes per struct field gobwire allocates for each dynamic struct value: the value's
/// field slot and the field's id, copied per value.
const FIELD_SLOT_COST: u64 = (size_of::<Option<gobwire::Value>>() + size_of::<i64>()) as u64;

/// Checks one gob stream (one direction of one connection), message by message.
///
/// Feed it every message body, in order, before handing the same body to gobwire's
/// [`gobwire::Decoder::push_message`]; [`GuardedDecoder`] does both. The guard keeps only the
/// stream's type table and the walk state of an unfinished value; it never buffers messages.
#[derive(Debug, Default)]
pub struct StreamGuard {
    limits: Limits,
    types: TypeTable,
    value: Option<ValueState>,
    /// The walk stack of the last value, kept for the next one.
    spare: Vec<Frame>,
    poisoned: bool,
}

impl StreamGuard {
    /// A guard for a new stream.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Its budgets.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Types the peer has defined so far.
    #[must_use]
    pub fn type_count(&self) -> usize {
        self.types.len()
    }

    /// Whether a value has begun and needs more messages.
    #[must_use]
    pub fn in_value(&self) -> bool {
        self.value.is_some()
    }

    /// Mark the stream unusable (for example after gobwire itself failed on it).
    pub fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Refuse a message length before its body is read or buffered.
    ///
    /// # Errors
    ///
    /// [`GuardError::MessageTooLarge`], or [`GuardError::Poisoned`] after an earlier error.
    pub fn check_length(&mut self, len: u64) -> Result<(), GuardError> {
        if self.poisoned {
            return Err(GuardError::Poisoned);
        }
        if len > self.limits.max_message_bytes {
            self.poisoned = true;
            return Err(GuardError::MessageTooLarge {
                len,
                limit: self.limits.max_message_bytes,
            });
        }
        Ok(())
    }

    /// Check one message body (without its length prefix).
    ///
    /// # Errors
    ///
    /// Any [`GuardError`]: the message must not reach gobwire, and the stream is finished
    /// (every later call returns [`GuardError::Poisoned`]).
    pub fn check_message(&mut self, body: &[u8]) -> Result<Verdict, GuardError> {
        if self.poisoned {
            return Err(GuardError::Poisoned);
        }
        let result = self.check(body);
        if result.is_err() {
            self.poisoned = true;
            self.value = None;
        }
        result
    }

    fn check(&mut self, body: &[u8]) -> Result<Verdict, GuardError> {
        self.check_length(body.len() as u64)?;
        if body.is_empty() {
            return Err(GuardError::EmptyMessage);
        }
        let mut c = Cursor::new(body);
        let mut st = match self.value.take() {
            Some(mut st) => {
                // gobwire appends the message and re-scans the whole value from its start.
                st.rescanned = st.rescanned.saturating_add(st.reads);
                if st.rescanned > self.limits.max_rescan_work {
                    return Err(GuardError::RescanBudget {
                        limit: self.limits.max_rescan_work,
                    });
                }
                st
            }
            None => {
                let id = c.int()?;
                if id < 0 {
                    let id = id.checked_neg().ok_or(GuardError::Malformed {
                        what: "type id out of range",
                        at: 0,
                    })?;
                    let def = parse_wire_type(&mut c, id, &self.limits, false)?;
                    if !c.at_end() {
                        return Err(GuardError::Malformed {
                            what: "extra data after a type definition",
                            at: c.pos(),
                        });
                    }
                    self.types.define(def, body.len() as u64, &self.limits)?;
                    return Ok(Verdict::TypeDefinition(id));
                }
                let ty = self.types.lookup(id).ok_or(GuardError::UndefinedType {
                    id,
                    referenced_by: None,
                })?;
                let info = self.types.check_root(ty, &self.limits)?;
                if !self.types.is_struct(ty) && c.uint()? != 0 {
                    return Err(GuardError::Malformed {
                        what: "non-zero delta for a non-struct value",
                        at: c.pos(),
                    });
                }
                // A scalar (net/rpc's many `string`, `bool` and `uint32` arguments and
                // replies) needs no walk state.
                if body.len() as u64 <= self.limits.max_value_bytes
                    && self.limits.max_value_depth > 0
                    && self.limits.max_value_messages > 0
                    && skip_scalar(&mut c, ty)?
                {
                    return Ok(Verdict::Complete);
                }
                // A `Dynamic` destination expands the top-level type once.
                let mut st = ValueState {
                    frames: std::mem::take(&mut self.spare),
                    expansion: info.cost,
                    ..ValueState::default()
                };
                st.frames.clear();
                st.frames.push(Frame::Value(ty));
                st
            }
        };
        st.messages += 1;
        if st.messages > self.limits.max_value_messages {
            return Err(GuardError::TooManyMessages {
                limit: self.limits.max_value_messages,
            });
        }
        st.bytes = st.bytes.saturating_add(body.len() as u64);
        if st.bytes > self.limits.max_value_bytes {
            return Err(GuardError::ValueTooLarge {
                limit: self.limits.max_value_bytes,
            });
        }
        st.check(&self.limits)?;
        let complete = self.walk(&mut st, &mut c);
        st.reads = st.reads.saturating_add(c.reads);
        if !complete? {
            self.value = Some(st);
            return Ok(Verdict::NeedMore);
        }
        // Bytes after the value are ignored, as by Go's decoder (`dec.buf.Reset()`) and
        // gobwire, and never parsed by either.
        self.spare = st.frames;
        Ok(Verdict::Complete)
    }

    /// Walk the value with an explicit stack, exactly as gobwire's scan reads it. Returns
    /// `false` when the message ends inside an interface's type sequence, the one place Go
    /// (and gobwire) continue a value in the next message.
    ///
    /// Values of built-in types other than interfaces are read in place, without a frame:
    /// they are most of any large value.
    fn walk(&mut self, st: &mut ValueState, c: &mut Cursor<'_>) -> Result<bool, GuardError> {
        let limits = &self.limits;
        let too_deep = GuardError::ValueTooDeep {
            limit: limits.max_value_depth,
        };
        while let Some(frame) = st.frames.last_mut() {
            match frame {
                Frame::Value(ty) => {
                    let ty = *ty;
                    st.frames.pop();
                    // gobwire counts a level on entering any value, scalars included.
                    if st.containers >= limits.max_value_depth {
                        return Err(too_deep);
                    }
                    if skip_scalar(c, ty)? {
                        continue;
                    }
                    let container = match ty {
                        Ty::Builtin(ids::INTERFACE) => {
                            let name = c.bytes()?;
                            if name.is_empty() {
                                continue;
                            }
                            if name.len() > MAX_INTERFACE_NAME {
                                return Err(GuardError::Malformed {
                                    what: "interface type name longer than 1024 bytes",
                                    at: c.pos(),
                                });
                            }
                            if std::str::from_utf8(name).is_err() {
                                return Err(GuardError::Malformed {
                                    what: "interface type name is not valid UTF-8",
                                    at: c.pos(),
                                });
                            }
                            st.expansion = st
                                .expansion
                                .saturating_add(INTERFACE_COST + name.len() as u64);
                            st.check(limits)?;
                            Frame::IfaceTypes
                        }
                        // `TypeTable::lookup` yields no other built-in.
                        Ty::Builtin(_) => return Err(UNANALYSED),
                        Ty::User(i) => {
                            let def = self.types.def(i);
                            let kids = def.kids.as_deref().ok_or(UNANALYSED)?;
                            match (def.kind, kids) {
                                (Kind::Array { len }, &[elem]) => {
                                    let n = c.uint()?;
                                    if n != len as u64 {
                                        return Err(GuardError::Malformed {
                                            what: "array length differs from its type",
                                            at: c.pos(),
                                        });
                                    }
                                    if skip_scalars(c, elem, n, st.containers, limits)? {
                                        continue;
                                    }
                                    Frame::Elems { elem, left: n }
                                }
                                (Kind::Slice, &[elem]) => {
                                    let n = c.uint()?;
                                    if skip_scalars(c, elem, n, st.containers, limits)? {
                                        continue;
                                    }
                                    Frame::Elems { elem, left: n }
                                }
                                (Kind::Map, &[key, elem]) => Frame::Pairs {
                                    key,
                                    elem,
                                    left: c.uint()?,
                                },
                                (Kind::Struct { .. }, _) => {
                                    st.expansion = st
                                        .expansion
                                        .saturating_add(FIELD_SLOT_COST * def.field_count() as u64);
                                    if st.ifaces > 0 {
                                        // `Interface::downcast` formats the struct's whole
                                        // type for every struct value it re-encodes.
                                        st.reencode = st
                                            .reencode
                                            .saturating_add(def.info.map_or(0, |i| i.cost));
                                    }
                                    st.check(limits)?;
                                    Frame::Struct { def: i, field: -1 }
                                }
                                (Kind::Marshaler, _) => {
                                    c.bytes()?;
                                    continue;
                                }
                                _ => return Err(UNANALYSED),
                            }
                        }
                    };
                    st.containers += 1;
                    st.frames.push(container);
                }
                Frame::Elems { elem, left } => {
                    if *left == 0 {
                        st.frames.pop();
                        st.containers -= 1;
                        continue;
                    }
                    c.expect_element()?;
                    *left -= 1;
                    let elem = *elem;
                    st.frames.push(Frame::Value(elem));
                }
                Frame::Pairs { key, elem, left } => {
                    if *left == 0 {
                        st.frames.pop();
                        st.containers -= 1;
                        continue;
                    }
                    c.expect_element()?;
                    *left -= 1;
                    let (key, elem) = (*key, *elem);
                    if st.containers >= limits.max_value_depth {
                        return Err(too_deep);
                    }
                    if skip_scalar(c, key)? {
                        if !skip_scalar(c, elem)? {
                            st.frames.push(Frame::Value(elem));
                        }
                    } else {
                        st.frames.push(Frame::Value(elem));
                        st.frames.push(Frame::Value(key));
                    }
                }
                Frame::Struct { def, field } => {
                    let def = *def;
                    let Some(f) = c.next_field(field, true)? else {
                        st.frames.pop();
                        st.containers -= 1;
                        continue;
                    };
                    let kids = self.types.def(def).kids.as_deref().ok_or(UNANALYSED)?;
                    let Some(&ty) = usize::try_from(f).ok().and_then(|f| kids.get(f)) else {
                        return Err(GuardError::Malformed {
                            what: "field number out of range",
                            at: c.pos(),
                        });
                    };
                    if st.containers >= limits.max_value_depth {
                        return Err(too_deep);
                    }
                    if !skip_scalar(c, ty)? {
                        st.frames.push(Frame::Value(ty));
                    }
                }
                Frame::IfaceTypes => {
                    if c.at_end() {
                        return Ok(false);
                    }
                    let start = c.pos();
                    let id = c.int()?;
                    if id >= 0 {
                        let ty = self.types.lookup(id).ok_or(GuardError::UndefinedType {
                            id,
                            referenced_by: None,
                        })?;
                        let info = self.types.check_root(ty, limits)?;
                        // gobwire expands the concrete type afresh for every interface value,
                        // and a downcast re-encodes it.
                        st.expansion = st.expansion.saturating_add(info.cost);
                        st.reencode = st.reencode.saturating_add(info.reencode);
                        // The concrete value's byte count: unreliable, and ignored by Go's
                        // decoder and gobwire alike.
                        c.uint()?;
                        if !self.types.is_struct(ty) && c.uint()? != 0 {
                            return Err(GuardError::Malformed {
                                what: "non-zero delta for a non-struct value",
                                at: c.pos(),
                            });
                        }
                        *frame = Frame::IfaceValue;
                        st.ifaces += 1;
                        st.frames.push(Frame::Value(ty));
                        st.check(limits)?;
                    } else {
                        let id = id.checked_neg().ok_or(GuardError::Malformed {
                            what: "type id out of range",
                            at: start,
                        })?;
                        let def = parse_wire_type(c, id, limits, true)?;
                        self.types.define(def, (c.pos() - start) as u64, limits)?;
                        // Inside a message, a count of the rest of the value follows.
                        if !c.at_end() {
                            c.uint()?;
                        }
                    }
                }
                Frame::IfaceValue => {
                    st.frames.pop();
                    st.containers -= 1;
                    st.ifaces -= 1;
                }
            }
        }
        Ok(true)
    }
}

/// Read a value of a built-in type other than `interface{}` in place. `Ok(false)` if `ty` is
/// not one.
#[inline]
fn skip_scalar(c: &mut Cursor<'_>, ty: Ty) -> Result<bool, GuardError> {
    match ty {
        Ty::Builtin(ids::BOOL | ids::INT | ids::UINT | ids::FLOAT) => {
            c.uint()?;
        }
        Ty::Builtin(ids::COMPLEX) => {
            c.uint()?;
            c.uint()?;
        }
        Ty::Builtin(ids::BYTES | ids::STRING) => {
            c.bytes()?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Read `n` elements of a scalar type in place (checking the input before each, as gobwire
/// does). `Ok(false)`, reading nothing, if `elem` is not a scalar.
fn skip_scalars(
    c: &mut Cursor<'_>,
    elem: Ty,
    n: u64,
    containers: u32,
    limits: &Limits,
) -> Result<bool, GuardError> {
    if matches!(elem, Ty::User(_) | Ty::Builtin(ids::INTERFACE)) {
        return Ok(false);
    }
    if n > 0 && containers + 1 >= limits.max_value_depth {
        return Err(GuardError::ValueTooDeep {
            limit: limits.max_value_depth,
        });
    }
    for _ in 0..n {
        c.expect_element()?;
        skip_scalar(c, elem)?;
    }
    Ok(true)
}

/// Either side refused a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The guard refused it.
    #[error(transparent)]
    Guard(#[from] GuardError),
    /// gobwire refused it.
    #[error(transparent)]
    Gob(#[from] gobwire::Error),
    /// The guard and gobwire read a message differently. This is a bug in the guard.
    #[error("gob guard: guard saw {guard:?} where gobwire saw {gob:?}")]
    Desync {
        /// What the guard saw.
        guard: Verdict,
        /// What gobwire saw.
        gob: gobwire::Progress,
    },
}

/// gobwire's [`gobwire::Decoder`] behind a [`StreamGuard`]: the same API, with every message
/// checked first.
#[derive(Debug, Default)]
pub struct GuardedDecoder {
    guard: StreamGuard,
    decoder: gobwire::Decoder,
}

impl GuardedDecoder {
    /// A decoder for a new stream.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self {
            guard: StreamGuard::new(limits),
            decoder: gobwire::Decoder::new(),
        }
    }

    /// Its guard.
    #[must_use]
    pub fn guard(&self) -> &StreamGuard {
        &self.guard
    }

    /// The types gobwire has recorded.
    #[must_use]
    pub fn types(&self) -> &gobwire::TypeTable {
        self.decoder.types()
    }

    /// See [`StreamGuard::check_length`].
    ///
    /// # Errors
    ///
    /// As [`StreamGuard::check_length`].
    pub fn check_length(&mut self, len: u64) -> Result<(), GuardError> {
        self.guard.check_length(len)
    }

    /// Check a message body, then push it to gobwire ([`gobwire::Decoder::push_message`]).
    ///
    /// # Errors
    ///
    /// [`DecodeError::Guard`] if the guard refused it (gobwire never saw it),
    /// [`DecodeError::Gob`] if gobwire did, [`DecodeError::Desync`] if they disagree. After any
    /// of them the stream is finished.
    pub fn push_message(&mut self, body: &[u8]) -> Result<gobwire::Progress, DecodeError> {
        let verdict = self.guard.check_message(body)?;
        let progress = match self.decoder.push_message(body) {
            Ok(p) => p,
            Err(e) => {
                self.guard.poison();
                return Err(e.into());
            }
        };
        if !verdict.agrees_with(progress) {
            self.guard.poison();
            return Err(DecodeError::Desync {
                guard: verdict,
                gob: progress,
            });
        }
        Ok(progress)
    }

    /// Decode the complete value into `dest` (gobwire's [`gobwire::Decoder::decode_into`]).
    ///
    /// # Errors
    ///
    /// gobwire's, for example a type mismatch. The stream stays usable, as in Go's net/rpc
    /// server.
    pub fn decode_into<T: gobwire::Decode + ?Sized>(
        &mut self,
        dest: &mut T,
    ) -> Result<(), gobwire::Error> {
        self.decoder.decode_into(dest)
    }

    /// Decode the complete value into a fresh `T`.
    ///
    /// # Errors
    ///
    /// As [`GuardedDecoder::decode_into`].
    pub fn decode<T: gobwire::Decode + Default>(&mut self) -> Result<T, gobwire::Error> {
        self.decoder.decode()
    }

    /// Drop the complete value (its inline type definitions are still recorded).
    ///
    /// # Errors
    ///
    /// gobwire's.
    pub fn discard(&mut self) -> Result<(), gobwire::Error> {
        self.decoder.discard()
    }
}
