//! Composite saveset recipes (the decoded payload of kind 0x03 records):
//! the parts a split message lists and how to rebuild its exact bytes
//! (format-spec/parts.md).
//! Bytes only: it must not do I/O; splitting and rebuilding are `parts`'s.

use super::Reader;

/// Most parts one recipe lists.
pub const MAX_PARTS: u32 = 1 << 16;
/// Most pieces one recipe holds.
pub const MAX_PIECES: u32 = 1 << 20;
/// Longest base64 line a recipe describes.
pub const MAX_LINE_LEN: u16 = 65532;

/// A part the message lists: its id (blake3 of the decoded bytes) and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartRef {
    /// blake3-256 of the decoded part.
    pub id: [u8; 32],
    /// Decoded length.
    pub len: u64,
}

/// One stretch of the original message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Bytes kept as they are (headers, text bodies, boundaries).
    Literal(Vec<u8>),
    /// A part, base64-encoded in lines of `line_len` characters separated
    /// by CRLF (or LF), with no line ending after the last line.
    Base64 {
        /// Index into the recipe's part list.
        part: u32,
        /// Characters per line (a multiple of 4), the last line shorter.
        line_len: u16,
        /// CRLF when true, LF otherwise.
        crlf: bool,
    },
}

/// What a composite saveset record holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recipe {
    /// Distinct parts, in first-use order.
    pub parts: Vec<PartRef>,
    /// The message, piece after piece.
    pub pieces: Vec<Piece>,
}

const TAG_LITERAL: u8 = 0x01;
const TAG_BASE64: u8 = 0x02;

impl Recipe {
    /// Encode (format-spec/parts.md, "Recipe").
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.parts.len() as u32).to_le_bytes());
        for p in &self.parts {
            out.extend_from_slice(&p.id);
            out.extend_from_slice(&p.len.to_le_bytes());
        }
        out.extend_from_slice(&(self.pieces.len() as u32).to_le_bytes());
        for piece in &self.pieces {
            match piece {
                Piece::Literal(bytes) => {
                    out.push(TAG_LITERAL);
                    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    out.extend_from_slice(bytes);
                }
                Piece::Base64 {
                    part,
                    line_len,
                    crlf,
                } => {
                    out.push(TAG_BASE64);
                    out.extend_from_slice(&part.to_le_bytes());
                    out.extend_from_slice(&line_len.to_le_bytes());
                    out.push(if *crlf { 0 } else { 1 });
                }
            }
        }
        out
    }

    /// Decode untrusted bytes: counts are checked against what the bytes
    /// can hold before anything is allocated.
    pub fn decode(bytes: &[u8]) -> Result<Recipe, String> {
        let short = || "recipe truncated".to_string();
        let mut r = Reader::new(bytes);
        let part_count = r.u32().ok_or_else(short)?;
        if part_count > MAX_PARTS || part_count as usize > r.remaining() / 40 {
            return Err(format!("recipe lists {part_count} parts"));
        }
        let mut parts = Vec::with_capacity(part_count as usize);
        for _ in 0..part_count {
            let id = r.array::<32>().ok_or_else(short)?;
            let len = r.u64().ok_or_else(short)?;
            parts.push(PartRef { id, len });
        }
        let piece_count = r.u32().ok_or_else(short)?;
        if piece_count > MAX_PIECES || piece_count as usize > r.remaining() / 5 {
            return Err(format!("recipe holds {piece_count} pieces"));
        }
        let mut pieces = Vec::with_capacity(piece_count as usize);
        for _ in 0..piece_count {
            pieces.push(match r.u8().ok_or_else(short)? {
                TAG_LITERAL => {
                    let len = r.u32().ok_or_else(short)? as usize;
                    Piece::Literal(r.take(len).ok_or_else(short)?.to_vec())
                }
                TAG_BASE64 => {
                    let part = r.u32().ok_or_else(short)?;
                    let line_len = r.u16().ok_or_else(short)?;
                    let crlf = match r.u8().ok_or_else(short)? {
                        0 => true,
                        1 => false,
                        e => return Err(format!("unknown line ending {e}")),
                    };
                    if part >= part_count {
                        return Err(format!("piece names part {part} of {part_count}"));
                    }
                    if line_len == 0 || line_len % 4 != 0 || line_len > MAX_LINE_LEN {
                        return Err(format!("base64 line length {line_len}"));
                    }
                    Piece::Base64 {
                        part,
                        line_len,
                        crlf,
                    }
                }
                t => return Err(format!("unknown piece tag {t:#04x}")),
            });
        }
        if r.remaining() != 0 {
            return Err("trailing bytes after the recipe".into());
        }
        Ok(Recipe { parts, pieces })
    }

    /// The length of the rebuilt message, or `None` if it overflows.
    pub fn rebuilt_len(&self) -> Option<u64> {
        let mut total = 0u64;
        for piece in &self.pieces {
            total = total.checked_add(match piece {
                Piece::Literal(b) => b.len() as u64,
                Piece::Base64 {
                    part,
                    line_len,
                    crlf,
                } => base64_encoded_len(self.parts.get(*part as usize)?.len, *line_len, *crlf)?,
            })?;
        }
        Some(total)
    }
}

/// Length of `len` bytes base64-encoded in lines of `line_len` characters.
pub fn base64_encoded_len(len: u64, line_len: u16, crlf: bool) -> Option<u64> {
    let chars = len.div_ceil(3).checked_mul(4)?;
    if chars == 0 {
        return Some(0);
    }
    let lines = chars.div_ceil(line_len as u64);
    let eol = if crlf { 2 } else { 1 };
    chars.checked_add((lines - 1) * eol)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage() {
        let r = Recipe {
            parts: vec![PartRef {
                id: [7; 32],
                len: 1000,
            }],
            pieces: vec![
                Piece::Literal(b"Subject: x\r\n\r\n".to_vec()),
                Piece::Base64 {
                    part: 0,
                    line_len: 76,
                    crlf: true,
                },
                Piece::Literal(b"\r\n--b--\r\n".to_vec()),
            ],
        };
        let b = r.encode();
        assert_eq!(Recipe::decode(&b).unwrap(), r);
        for cut in 0..b.len() {
            assert!(Recipe::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(
            r.rebuilt_len(),
            Some(14 + base64_encoded_len(1000, 76, true).unwrap() + 9)
        );
        // 1000 bytes: 1336 characters in 18 lines, 17 line endings.
        assert_eq!(base64_encoded_len(1000, 76, true), Some(1336 + 34));
        let mut bad_part = r.clone();
        bad_part.pieces[1] = Piece::Base64 {
            part: 1,
            line_len: 76,
            crlf: true,
        };
        assert!(Recipe::decode(&bad_part.encode()).is_err());
        let mut bad_line = r;
        bad_line.pieces[1] = Piece::Base64 {
            part: 0,
            line_len: 75,
            crlf: true,
        };
        assert!(Recipe::decode(&bad_line.encode()).is_err());
    }
}
