//! The yamux frame header: 12 bytes, big-endian (hashicorp/yamux `spec.md`, "Framing").
//!
//! ```text
//! version u8 (=0) | type u8 | flags u16 | stream id u32 | length u32
//! ```
//!
//! Only `Data` frames carry a payload (`length` bytes after the header). For `WindowUpdate` the
//! length is a window delta, for `Ping` an opaque value echoed back, for `GoAway` an error code.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

use super::error::ProtocolError;

/// Size of an encoded header.
pub(crate) const HEADER_LEN: usize = 12;

/// The only protocol version there is.
pub(crate) const PROTO_VERSION: u8 = 0;

/// The frame types of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameType {
    /// Stream data; `length` payload bytes follow.
    Data,
    /// Grows the peer's send window by `length`; also carries stream flags without data.
    WindowUpdate,
    /// Keepalive / RTT probe (`SYN` = request, `ACK` = reply); `length` is echoed.
    Ping,
    /// Session termination notice; `length` is a [`GoAwayCode`] value.
    GoAway,
}

impl FrameType {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(FrameType::Data),
            1 => Some(FrameType::WindowUpdate),
            2 => Some(FrameType::Ping),
            3 => Some(FrameType::GoAway),
            _ => None,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            FrameType::Data => 0,
            FrameType::WindowUpdate => 1,
            FrameType::Ping => 2,
            FrameType::GoAway => 3,
        }
    }
}

/// Frame flags (a bit set). Unknown bits are kept on decode and ignored, as hashicorp does.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Flags(u16);

impl Flags {
    /// No flag.
    pub(crate) const NONE: Flags = Flags(0);
    /// Opens a stream; on a ping, marks a request.
    pub(crate) const SYN: Flags = Flags(1);
    /// Acknowledges a stream; on a ping, marks a reply.
    pub(crate) const ACK: Flags = Flags(2);
    /// Half-closes a stream: the sender sends no more data.
    pub(crate) const FIN: Flags = Flags(4);
    /// Resets (aborts) a stream.
    pub(crate) const RST: Flags = Flags(8);

    /// Whether every bit of `other` is set.
    pub(crate) fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    /// Whether no bit is set.
    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Flags::SYN, "SYN"),
            (Flags::ACK, "ACK"),
            (Flags::FIN, "FIN"),
            (Flags::RST, "RST"),
        ];
        let mut first = true;
        for (flag, name) in names {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        let unknown = self.0 & !0xf;
        if unknown != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{unknown:#x}")?;
            first = false;
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// GoAway error codes we send (2, internal error, is only ever received).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GoAwayCode {
    /// Normal termination: no new streams, existing ones continue.
    Normal,
    /// The sender detected a protocol error.
    ProtocolError,
}

impl GoAwayCode {
    pub(crate) fn as_u32(self) -> u32 {
        match self {
            GoAwayCode::Normal => 0,
            GoAwayCode::ProtocolError => 1,
        }
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) typ: FrameType,
    pub(crate) flags: Flags,
    pub(crate) stream_id: u32,
    /// Payload length (Data), window delta (WindowUpdate), opaque value (Ping) or code (GoAway).
    pub(crate) length: u32,
}

impl Header {
    /// A data frame header for `len` payload bytes.
    pub(crate) fn data(stream_id: u32, flags: Flags, len: u32) -> Self {
        Header {
            typ: FrameType::Data,
            flags,
            stream_id,
            length: len,
        }
    }

    /// A window update (also used to carry SYN/ACK/FIN/RST without data).
    pub(crate) fn window_update(stream_id: u32, flags: Flags, delta: u32) -> Self {
        Header {
            typ: FrameType::WindowUpdate,
            flags,
            stream_id,
            length: delta,
        }
    }

    /// A ping request (`SYN`) or reply (`ACK`), always on stream 0.
    pub(crate) fn ping(flags: Flags, value: u32) -> Self {
        Header {
            typ: FrameType::Ping,
            flags,
            stream_id: 0,
            length: value,
        }
    }

    /// A GoAway frame, always on stream 0.
    pub(crate) fn go_away(code: GoAwayCode) -> Self {
        Header {
            typ: FrameType::GoAway,
            flags: Flags::NONE,
            stream_id: 0,
            length: code.as_u32(),
        }
    }

    /// Encodes the header.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = PROTO_VERSION;
        b[1] = self.typ.as_u8();
        b[2..4].copy_from_slice(&self.flags.0.to_be_bytes());
        b[4..8].copy_from_slice(&self.stream_id.to_be_bytes());
        b[8..12].copy_from_slice(&self.length.to_be_bytes());
        b
    }

    /// Decodes a header; fails on an unknown version or frame type (both end the session, as in
    /// hashicorp's `recvLoop`).
    pub(crate) fn decode(b: &[u8; HEADER_LEN]) -> Result<Self, ProtocolError> {
        if b[0] != PROTO_VERSION {
            return Err(ProtocolError::InvalidVersion(b[0]));
        }
        let typ = FrameType::from_u8(b[1]).ok_or(ProtocolError::InvalidType(b[1]))?;
        Ok(Header {
            typ,
            flags: Flags(u16::from_be_bytes([b[2], b[3]])),
            stream_id: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            length: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_matches_hashicorp_layout() {
        // hashicorp: hdr.encode(typeWindowUpdate, flagSYN, 1, 0)
        let h = Header::window_update(1, Flags::SYN, 0);
        assert_eq!(h.encode(), [0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]);
        let h = Header::data(0x0102_0304, Flags::FIN | Flags::ACK, 0x0a0b_0c0d);
        assert_eq!(h.encode(), [0, 0, 0, 6, 1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d]);
        let h = Header::go_away(GoAwayCode::ProtocolError);
        assert_eq!(h.encode(), [0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn round_trip_all_types_and_flags() {
        for typ in [
            FrameType::Data,
            FrameType::WindowUpdate,
            FrameType::Ping,
            FrameType::GoAway,
        ] {
            for flags in 0..=0xffffu16 {
                if flags % 97 != 0 && flags > 16 {
                    continue;
                }
                let h = Header {
                    typ,
                    flags: Flags(flags),
                    stream_id: u32::from(flags).wrapping_mul(2_654_435_761),
                    length: u32::MAX - u32::from(flags),
                };
                assert_eq!(Header::decode(&h.encode()), Ok(h));
            }
        }
    }

    #[test]
    fn rejects_bad_version_and_type() {
        let mut b = Header::ping(Flags::SYN, 7).encode();
        b[0] = 1;
        assert_eq!(Header::decode(&b), Err(ProtocolError::InvalidVersion(1)));
        let mut b = Header::ping(Flags::SYN, 7).encode();
        b[1] = 4;
        assert_eq!(Header::decode(&b), Err(ProtocolError::InvalidType(4)));
        b[1] = 0xff;
        assert_eq!(Header::decode(&b), Err(ProtocolError::InvalidType(0xff)));
    }

    #[test]
    fn every_header_decodes_or_errors_without_panic() {
        // A cheap exhaustive-ish sweep over the first two bytes with random tails.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for v in 0..=255u8 {
            for t in 0..=255u8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let mut b = [0u8; HEADER_LEN];
                b[0] = v;
                b[1] = t;
                b[2..10].copy_from_slice(&x.to_be_bytes());
                let r = Header::decode(&b);
                assert_eq!(r.is_ok(), v == 0 && t <= 3);
            }
        }
    }

    #[test]
    fn flags_debug() {
        assert_eq!(format!("{:?}", Flags::SYN | Flags::FIN), "SYN|FIN");
        assert_eq!(format!("{:?}", Flags::NONE), "-");
        assert_eq!(format!("{:?}", Flags(0x18)), "RST|0x10");
        assert!(!Flags::NONE.contains(Flags::NONE));
        assert!((Flags::SYN | Flags::ACK).contains(Flags::ACK));
    }
}
