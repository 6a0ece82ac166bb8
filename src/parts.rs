//! Part-level single instance: splitting a MIME message into a recipe and
//! content-addressed parts, and rebuilding its exact bytes.
//!
//! Owns the MIME side only: where base64 bodies sit in a message (found
//! with mail-parser, which gives exact byte offsets and decodes them), and
//! the exact re-encoding. A body becomes a part only if re-encoding its
//! decoded bytes with the line length and line ending found gives back the
//! very same bytes; and a split is returned only if the message rebuilt
//! from it hashes like the original. Anything else (malformed MIME, odd encoders, quoted-printable
//! bodies) stays a literal: never an error. It does not store anything:
//! the store writes the parts and the recipe (format-spec/parts.md).

use mail_parser::{Encoding, Message, MessageParser, PartType};

use crate::format::composite::{MAX_LINE_LEN, PartRef, Piece, Recipe};
use crate::id::SavesetId;

/// Messages smaller than this are stored whole without parsing.
pub const MIN_MESSAGE_BYTES: usize = 8 << 10;
/// Bodies that decode to fewer bytes than this stay in the message.
pub const MIN_PART_BYTES: usize = 2 << 10;

/// A message split into a recipe and its parts' decoded bytes (in the
/// recipe's part order).
#[derive(Debug, Clone)]
pub struct Split {
    /// How to rebuild the message.
    pub recipe: Recipe,
    /// Decoded bytes of each part of `recipe.parts`.
    pub parts: Vec<Vec<u8>>,
}

/// Split `message` if it has base64 bodies worth storing on their own and
/// it rebuilds exactly; `None` otherwise.
pub fn split(message: &[u8]) -> Option<Split> {
    split_hashed(message, &SavesetId::of(message))
}

/// [`split`] of a message whose id (blake3) is known already.
pub fn split_hashed(message: &[u8], id: &SavesetId) -> Option<Split> {
    if message.len() < MIN_MESSAGE_BYTES || !mentions_base64(message) {
        return None;
    }
    let parsed = MessageParser::default().parse(message)?;
    let mut bodies = Vec::new();
    collect_base64_bodies(parsed, 0, message.len(), &mut bodies, 4);
    bodies.sort_unstable_by_key(|b| b.start);
    let mut recipe = Recipe::default();
    let mut parts: Vec<Vec<u8>> = Vec::new();
    // Before a split is accepted the message is rebuilt, stretch by
    // stretch, and its hash compared with the original's.
    let mut rebuilt = blake3::Hasher::new();
    let mut encoded = Vec::new();
    let mut at = 0usize;
    for body in bodies {
        if body.start < at || body.end > message.len() {
            continue;
        }
        let Some((start, end)) = trim_whitespace(message, body.start, body.end) else {
            continue;
        };
        let text = &message[start..end];
        let Some((decoded, line_len, crlf)) = decode_body(text, body.decoded) else {
            continue;
        };
        if decoded.len() < MIN_PART_BYTES {
            continue;
        }
        encoded.clear();
        encode_base64_lines(&decoded, line_len, crlf, &mut encoded);
        if encoded != text {
            continue;
        }
        if start > at {
            rebuilt.update(&message[at..start]);
            recipe
                .pieces
                .push(Piece::Literal(message[at..start].to_vec()));
        }
        rebuilt.update(&encoded);
        let id = SavesetId::of(&decoded).0;
        let index = match recipe.parts.iter().position(|p| p.id == id) {
            Some(i) => i,
            None => {
                recipe.parts.push(PartRef {
                    id,
                    len: decoded.len() as u64,
                });
                parts.push(decoded);
                recipe.parts.len() - 1
            }
        };
        recipe.pieces.push(Piece::Base64 {
            part: index as u32,
            line_len,
            crlf,
        });
        at = end;
    }
    if recipe.parts.is_empty() {
        return None;
    }
    if at < message.len() {
        rebuilt.update(&message[at..]);
        recipe.pieces.push(Piece::Literal(message[at..].to_vec()));
    }
    (*rebuilt.finalize().as_bytes() == id.0).then_some(Split { recipe, parts })
}

/// A base64 body found by the parser: where it is, and its bytes as the
/// parser decoded them when it kept them as bytes.
struct Body {
    start: usize,
    end: usize,
    decoded: Option<Vec<u8>>,
}

/// The decoded bytes of a base64 body and its line layout. The parser's
/// decoding is used when it has one (it is checked by re-encoding later);
/// text bodies, which the parser turns into text, are decoded here.
fn decode_body(text: &[u8], parsed: Option<Vec<u8>>) -> Option<(Vec<u8>, u16, bool)> {
    match parsed {
        Some(decoded) => {
            let (line_len, crlf) = line_layout(text)?;
            Some((decoded, line_len, crlf))
        }
        None => decode_exact(text),
    }
}

/// Line length and line ending of a base64 body, from its first line.
fn line_layout(text: &[u8]) -> Option<(u16, bool)> {
    let (line_len, crlf) = match text.iter().position(|&b| b == b'\n') {
        None => (u16::try_from(text.len().max(4)).ok()?, true),
        Some(p) => {
            let crlf = p > 0 && text[p - 1] == b'\r';
            (u16::try_from(if crlf { p - 1 } else { p }).ok()?, crlf)
        }
    };
    (line_len > 0 && line_len % 4 == 0 && line_len <= MAX_LINE_LEN).then_some((line_len, crlf))
}

/// Rebuild a message from its recipe and its parts' decoded bytes (in the
/// recipe's order). `None` when a part is missing or has the wrong length.
pub fn rebuild(recipe: &Recipe, parts: &[&[u8]]) -> Option<Vec<u8>> {
    if parts.len() != recipe.parts.len()
        || parts
            .iter()
            .zip(&recipe.parts)
            .any(|(b, p)| b.len() as u64 != p.len)
    {
        return None;
    }
    let mut out = Vec::with_capacity(recipe.rebuilt_len()? as usize);
    for piece in &recipe.pieces {
        match piece {
            Piece::Literal(b) => out.extend_from_slice(b),
            Piece::Base64 {
                part,
                line_len,
                crlf,
            } => encode_base64_lines(parts[*part as usize], *line_len, *crlf, &mut out),
        }
    }
    Some(out)
}

/// A cheap filter before parsing: no "base64" anywhere (in the usual
/// spellings: base64, Base64, BASE64), nothing to split.
fn mentions_base64(message: &[u8]) -> bool {
    memchr::memmem::find(message, b"ase64").is_some()
        || memchr::memmem::find(message, b"ASE64").is_some()
}

/// Base64 bodies of `msg` (offsets relative to its raw bytes, shifted by
/// `base`), descending into attached messages that are not themselves encoded.
fn collect_base64_bodies(
    msg: Message<'_>,
    base: usize,
    limit: usize,
    out: &mut Vec<Body>,
    depth: u32,
) {
    for part in msg.parts {
        let (start, end) = (
            base + part.offset_body as usize,
            base + part.offset_end as usize,
        );
        if start >= end || end > limit {
            continue;
        }
        let base64 = part.encoding == Encoding::Base64;
        match part.body {
            PartType::Multipart(_) => {}
            PartType::Message(nested) if part.encoding == Encoding::None && depth > 0 => {
                collect_base64_bodies(nested, start, end, out, depth - 1);
            }
            PartType::Message(_) => {}
            PartType::Binary(b) | PartType::InlineBinary(b) if base64 => out.push(Body {
                start,
                end,
                decoded: Some(b.into_owned()),
            }),
            _ if base64 => out.push(Body {
                start,
                end,
                decoded: None,
            }),
            _ => {}
        }
    }
}

fn trim_whitespace(msg: &[u8], mut start: usize, mut end: usize) -> Option<(usize, usize)> {
    while start < end && msg[start].is_ascii_whitespace() {
        start += 1;
    }
    while end > start && msg[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    (start < end).then_some((start, end))
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Decode a base64 body laid out in lines of one length, and give that
/// length and the line ending, only if re-encoding gives back `text` exactly:
/// every line but the last has the same length, the line ending never
/// changes, and the encoding is canonical (padding bits zero), which
/// together make the re-encoding identical.
fn decode_exact(text: &[u8]) -> Option<(Vec<u8>, u16, bool)> {
    let (line_len, crlf) = line_layout(text)?;
    let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
    let table = decode_table();
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut rest = text;
    loop {
        let n = rest.len().min(line_len as usize);
        let (line, after) = rest.split_at(n);
        let last = after.is_empty();
        if line.len() % 4 != 0 || (!last && line.len() != line_len as usize) {
            return None;
        }
        decode_line(line, last, &table, &mut out)?;
        if last {
            return Some((out, line_len, crlf));
        }
        rest = after.strip_prefix(eol)?;
        if rest.is_empty() {
            return None;
        }
    }
}

fn decode_table() -> [u8; 256] {
    let mut table = [0xFFu8; 256];
    for (i, &c) in ALPHABET.iter().enumerate() {
        table[c as usize] = i as u8;
    }
    table
}

/// Decode one line of whole quads; padding only in the last quad of the
/// last line, with the bits it leaves unused zero (canonical).
fn decode_line(line: &[u8], last: bool, table: &[u8; 256], out: &mut Vec<u8>) -> Option<()> {
    let quads = line.len() / 4;
    for (q, quad) in line.chunks_exact(4).enumerate() {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 0 && (pad > 2 || !last || q + 1 != quads) {
            return None;
        }
        let mut v = 0u32;
        for &c in &quad[..4 - pad] {
            let d = table[c as usize];
            if d == 0xFF {
                return None;
            }
            v = (v << 6) | d as u32;
        }
        v <<= 6 * pad as u32;
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        let keep = 3 - pad;
        if bytes[keep..].iter().any(|&b| b != 0) {
            return None;
        }
        out.extend_from_slice(&bytes[..keep]);
    }
    Some(())
}

/// Standard base64 with padding, in lines of `line_len` characters
/// separated by CRLF or LF, with no line ending after the last line.
pub fn encode_base64_lines(data: &[u8], line_len: u16, crlf: bool, out: &mut Vec<u8>) {
    let per_line = (line_len.max(4) as usize / 4) * 3;
    out.reserve(data.len().div_ceil(3) * 4 + data.len() / per_line.max(1) * 2);
    for (i, line) in data.chunks(per_line).enumerate() {
        if i > 0 {
            if crlf {
                out.push(b'\r');
            }
            out.push(b'\n');
        }
        let mut quads = line.chunks_exact(3);
        for c in &mut quads {
            let v = (c[0] as u32) << 16 | (c[1] as u32) << 8 | c[2] as u32;
            out.extend_from_slice(&[
                ALPHABET[(v >> 18) as usize & 63],
                ALPHABET[(v >> 12) as usize & 63],
                ALPHABET[(v >> 6) as usize & 63],
                ALPHABET[v as usize & 63],
            ]);
        }
        match *quads.remainder() {
            [a] => {
                let v = (a as u32) << 16;
                out.extend_from_slice(&[
                    ALPHABET[(v >> 18) as usize & 63],
                    ALPHABET[(v >> 12) as usize & 63],
                    b'=',
                    b'=',
                ]);
            }
            [a, b] => {
                let v = (a as u32) << 16 | (b as u32) << 8;
                out.extend_from_slice(&[
                    ALPHABET[(v >> 18) as usize & 63],
                    ALPHABET[(v >> 12) as usize & 63],
                    ALPHABET[(v >> 6) as usize & 63],
                    b'=',
                ]);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(data: &[u8], line_len: u16, crlf: bool) -> Vec<u8> {
        let mut v = Vec::new();
        encode_base64_lines(data, line_len, crlf, &mut v);
        v
    }

    #[test]
    fn base64_round_trips_at_every_length() {
        for n in 0..200usize {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            for (line_len, crlf) in [(76, true), (72, false), (4, true)] {
                let text = b64(&data, line_len, crlf);
                let (d, l, c) = decode_exact(&text).unwrap_or_else(|| panic!("n {n}"));
                assert_eq!(d, data);
                // A single line is described by its own length.
                if text.len() > line_len as usize {
                    assert_eq!((l, c), (line_len, crlf));
                }
            }
        }
        assert_eq!(b64(b"Man", 76, true), b"TWFu");
        assert_eq!(b64(b"Ma", 76, true), b"TWE=");
        assert_eq!(b64(b"M", 76, true), b"TQ==");
    }

    #[test]
    fn irregular_base64_is_not_taken_apart() {
        let data: Vec<u8> = (0..500u32).map(|i| (i * 7) as u8).collect();
        let mut text = b64(&data, 76, true);
        // A short line in the middle: a re-encode would differ.
        text.remove(40);
        assert!(decode_exact(&text).is_none());
        assert!(decode_exact(b"TWFu\r\nTW").is_none());
        assert!(decode_exact(b"TQ==TWFu").is_none());
        assert!(decode_exact(b"TW-u").is_none());
        // Non-canonical: unused bits set ("TR==" decodes like "TQ==").
        assert!(decode_exact(b"TR==").is_none());
        assert!(decode_exact(b"TQ==").is_some());
        // A trailing line ending belongs to what follows, not the body.
        assert!(decode_exact(b"TWFu\r\n").is_none());
    }

    fn mime(attachment: &[u8], crlf: bool) -> Vec<u8> {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut m = format!(
            "From: a@example.com{eol}Subject: report{eol}MIME-Version: 1.0{eol}Content-Type: multipart/mixed; boundary=\"XX\"{eol}{eol}--XX{eol}Content-Type: text/plain{eol}{eol}See attached.{eol}--XX{eol}Content-Type: application/pdf; name=\"r.pdf\"{eol}Content-Transfer-Encoding: base64{eol}Content-Disposition: attachment{eol}{eol}"
        )
        .into_bytes();
        m.extend(b64(attachment, 76, crlf));
        m.extend(format!("{eol}--XX--{eol}").as_bytes());
        m
    }

    #[test]
    fn an_attachment_is_split_out_and_the_message_rebuilds_exactly() {
        let attachment: Vec<u8> = (0..20_000u32).map(|i| (i * 131 % 251) as u8).collect();
        for crlf in [true, false] {
            let m = mime(&attachment, crlf);
            let s = split(&m).expect("split");
            assert_eq!(s.parts, vec![attachment.clone()]);
            assert_eq!(s.recipe.parts[0].id, SavesetId::of(&attachment).0);
            let refs: Vec<&[u8]> = s.parts.iter().map(Vec::as_slice).collect();
            assert_eq!(rebuild(&s.recipe, &refs).unwrap(), m);
            assert_eq!(s.recipe.rebuilt_len(), Some(m.len() as u64));
        }
    }

    #[test]
    fn small_or_plain_messages_are_not_split() {
        assert!(split(b"Subject: hi\r\n\r\nhello").is_none());
        let plain = format!("Subject: x\r\n\r\n{}", "text ".repeat(5000));
        assert!(split(plain.as_bytes()).is_none());
        let small: Vec<u8> = (0..100u8).collect();
        assert!(split(&mime(&small, true)).is_none());
    }

    #[test]
    fn arbitrary_bytes_never_split_wrongly() {
        let mut rng = 12345u64;
        for round in 0..300 {
            let attachment: Vec<u8> = (0..9000u32).map(|i| (i ^ round) as u8).collect();
            let mut m = mime(&attachment, round % 2 == 0);
            for _ in 0..(round % 7) {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let at = (rng >> 33) as usize % m.len();
                m[at] = (rng >> 20) as u8;
            }
            if let Some(s) = split(&m) {
                let refs: Vec<&[u8]> = s.parts.iter().map(Vec::as_slice).collect();
                assert_eq!(rebuild(&s.recipe, &refs).unwrap(), m, "round {round}");
            }
        }
    }
}
