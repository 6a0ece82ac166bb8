//! Part-level single instance: splitting a MIME message into a recipe and
//! content-addressed parts, and rebuilding its exact bytes.
//!
//! Owns the MIME side only: where base64 bodies sit in a message (after a
//! `Content-Transfer-Encoding: base64` header, past the blank line that ends
//! its header block) and their exact decoding. A body becomes a part only
//! if it is laid out so that re-encoding its decoded bytes with the line
//! length and line ending found gives back the very same bytes: every line
//! but the last of one length, one line ending throughout, canonical
//! padding. The rest of the message is kept verbatim, so a split always
//! rebuilds the original; anything irregular (odd encoders, quoted-printable
//! bodies, text that only looks like a header) stays a literal, never an
//! error. It does not store anything: the store writes the parts and the
//! recipe (format-spec/parts.md).
//!
//! The scan reads headers rather than parsing the whole MIME tree: finding
//! bodies is a hint, and exactness comes from the decoding rules alone, so
//! a misread structure can cost dedup but never bytes.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

use memchr::memmem::Finder;

use crate::format::composite::{
    MAX_LINE_LEN, MAX_PARTS, MAX_PIECES, PartRef, Piece, Recipe, base64_encoded_len,
};
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

/// Split `message` if it has base64 bodies worth storing on their own;
/// `None` otherwise.
pub fn split(message: &[u8]) -> Option<Split> {
    split_hashed(message, &SavesetId::of(message))
}

/// [`split`] of a message whose id (blake3) is known already; the id is
/// checked against the rebuilt message in debug builds and by the fuzz
/// target `split_rebuild`.
pub fn split_hashed(message: &[u8], id: &SavesetId) -> Option<Split> {
    if message.len() < MIN_MESSAGE_BYTES {
        return None;
    }
    let mut recipe = Recipe::default();
    let mut parts: Vec<Vec<u8>> = Vec::new();
    // Where each part is in the recipe: the same attachment twice is listed once.
    let mut listed: std::collections::HashMap<[u8; 32], usize> = Default::default();
    let mut at = 0usize;
    for body in Base64Bodies::new(message) {
        if body.decoded.len() < MIN_PART_BYTES {
            continue;
        }
        // A recipe holds at most MAX_PARTS parts and MAX_PIECES pieces
        // (readers refuse more): any further bodies stay in the literal.
        if recipe.parts.len() == MAX_PARTS as usize || recipe.pieces.len() + 3 > MAX_PIECES as usize
        {
            break;
        }
        if body.start > at {
            recipe
                .pieces
                .push(Piece::Literal(message.get(at..body.start)?.to_vec()));
        }
        let part_id = SavesetId::of(&body.decoded).0;
        let index = *listed.entry(part_id).or_insert_with(|| {
            recipe.parts.push(PartRef {
                id: part_id,
                len: body.decoded.len() as u64,
            });
            parts.push(body.decoded);
            recipe.parts.len() - 1
        });
        recipe.pieces.push(Piece::Base64 {
            part: index as u32,
            line_len: body.line_len,
            crlf: body.crlf,
        });
        at = body.end;
    }
    if recipe.parts.is_empty() {
        return None;
    }
    if at < message.len() {
        recipe
            .pieces
            .push(Piece::Literal(message.get(at..)?.to_vec()));
    }
    // The stitching must add up to the message; the bytes are checked in
    // debug builds (re-encoding every part costs a fifth of an ingest).
    if recipe.rebuilt_len() != Some(message.len() as u64) {
        return None;
    }
    let split = Split { recipe, parts };
    debug_assert!(rebuilds_to(&split, id), "a split must rebuild its message");
    Some(split)
}

/// Whether `split` rebuilds the message whose blake3 is `id`.
fn rebuilds_to(split: &Split, id: &SavesetId) -> bool {
    let refs: Vec<&[u8]> = split.parts.iter().map(Vec::as_slice).collect();
    rebuild(&split.recipe, &refs).is_some_and(|m| SavesetId::of(&m) == *id)
}

/// A base64 body: where its text is in the message, its decoded bytes and
/// its line layout.
struct Body {
    start: usize,
    end: usize,
    decoded: Vec<u8>,
    line_len: u16,
    crlf: bool,
}

/// The exactly re-encodable base64 bodies of a message, in order and not
/// overlapping.
struct Base64Bodies<'m> {
    message: &'m [u8],
    /// "ase64" and "ASE64" (for base64, Base64 and BASE64, the spellings
    /// encoders use), each with its next hit at or after `from`: a finder
    /// is asked again only once `from` passes its hit, so a message is
    /// searched once however many bodies it holds.
    finders: [(Finder<'static>, Option<usize>); 2],
    from: usize,
}

impl<'m> Base64Bodies<'m> {
    fn new(message: &'m [u8]) -> Self {
        let finder = |needle: &'static [u8]| {
            let f = Finder::new(needle);
            let hit = f.find(message);
            (f, hit)
        };
        Base64Bodies {
            message,
            finders: [finder(b"ase64"), finder(b"ASE64")],
            from: 0,
        }
    }

    /// The next `base64` token at or after `self.from` (its position).
    fn next_token(&mut self) -> Option<usize> {
        let (message, from) = (self.message, self.from);
        for (finder, hit) in &mut self.finders {
            if hit.is_some_and(|h| h < from) {
                *hit = finder
                    .find(message.get(from..).unwrap_or_default())
                    .map(|h| from + h);
            }
        }
        self.finders.iter().filter_map(|(_, hit)| *hit).min()
    }
}

impl Iterator for Base64Bodies<'_> {
    type Item = Body;

    fn next(&mut self) -> Option<Body> {
        let msg = self.message;
        loop {
            let hit = self.next_token()?;
            self.from = hit + 5;
            let Some(value_end) = encoding_header_value(msg, hit) else {
                continue;
            };
            // No empty line after this header: no body anywhere after it.
            let body_start = skip_blank_lines(msg, header_block_end(msg, value_end)?);
            // Every byte is looked at a bounded number of times: other
            // headers of this block name the same body, and a body that
            // does not decode ends at its first line that is not base64.
            self.from = body_start;
            if let Some(body) = decode_body(msg, body_start) {
                self.from = body.end;
                return Some(body);
            }
        }
    }
}

const HEADER_NAME: &[u8] = b"content-transfer-encoding";

/// If the token "ase64" at `hit` is the value of a
/// `Content-Transfer-Encoding` header (name at a line start, value
/// `base64` alone, possibly folded), the offset of the line ending that
/// ends the header.
fn encoding_header_value(msg: &[u8], hit: usize) -> Option<usize> {
    let byte = |i: usize| msg.get(i).copied();
    let token = hit.checked_sub(1)?;
    if !byte(token)?.eq_ignore_ascii_case(&b'b') {
        return None;
    }
    // Back over the white space between the colon and the value; a line
    // break may be crossed only where the next line is a folded one.
    let mut i = token;
    while let Some(c @ (b' ' | b'\t' | b'\r' | b'\n')) = i.checked_sub(1).and_then(byte) {
        if c == b'\n' && !matches!(byte(i), Some(b' ' | b'\t')) {
            return None;
        }
        i -= 1;
    }
    let colon = i.checked_sub(1)?;
    let name_start = colon.checked_sub(HEADER_NAME.len())?;
    if byte(colon) != Some(b':')
        || !msg
            .get(name_start..colon)?
            .eq_ignore_ascii_case(HEADER_NAME)
        || (name_start > 0 && byte(name_start - 1) != Some(b'\n'))
    {
        return None;
    }
    // Nothing but white space after the value, up to the line ending.
    let mut j = token + 6;
    while matches!(byte(j), Some(b' ' | b'\t' | b'\r')) {
        j += 1;
    }
    (byte(j) == Some(b'\n')).then_some(j)
}

/// Where the body starts after the header line ending at `line_end` (a
/// `\n`): just past the first empty line.
fn header_block_end(msg: &[u8], line_end: usize) -> Option<usize> {
    let mut at = line_end;
    loop {
        match msg.get(at + 1..)? {
            [b'\n', ..] => return Some(at + 2),
            [b'\r', b'\n', ..] => return Some(at + 3),
            rest => at += 1 + memchr::memchr(b'\n', rest)?,
        }
    }
}

/// Past any empty lines at `at`: they stay in the literal before a body.
fn skip_blank_lines(msg: &[u8], mut at: usize) -> usize {
    loop {
        match msg.get(at..) {
            Some([b'\n', ..]) => at += 1,
            Some([b'\r', b'\n', ..]) => at += 2,
            _ => return at,
        }
    }
}

/// Decode the base64 body starting at `start`, if it is laid out so that
/// [`encode_base64_lines`] gives back its exact text: lines of one length L
/// (a multiple of 4, at most [`MAX_LINE_LEN`]) separated by one line ending,
/// the last line 1..=L characters, canonical padding only at its end. The
/// body ends at the end of the message, a blank line, or a line that does
/// not start like base64 (a boundary); anything else leaves it undecoded.
fn decode_body(msg: &[u8], start: usize) -> Option<Body> {
    let first = msg.get(start..)?;
    let (line_len, crlf) = match memchr::memchr(b'\n', first) {
        None => (first.len(), true),
        Some(n) => {
            let crlf = n > 0 && first.get(n - 1) == Some(&b'\r');
            (n - usize::from(crlf), crlf)
        }
    };
    if line_len == 0 || line_len % 4 != 0 || line_len > MAX_LINE_LEN as usize {
        return None;
    }
    let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
    let mut decoded = Vec::with_capacity(first.len().min(64 << 20) / 4 * 3);
    let mut pos = start;
    let end = loop {
        let rest = msg.get(pos..)?;
        if rest.get(line_len..).is_some_and(|t| t.starts_with(eol)) {
            let after = pos + line_len + eol.len();
            let more = msg.get(after).is_some_and(is_base64);
            let mark = decoded.len();
            if decode_line(rest.get(..line_len)?, !more, &mut decoded).is_some() {
                if more {
                    pos = after;
                    continue;
                }
                break pos + line_len;
            }
            // Not a full line after all: a shorter last line, read below,
            // whose line ending falls inside those L bytes.
            decoded.truncate(mark);
        }
        // A last line shorter than L, or one that ends the message.
        let n = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let line = match (n < rest.len(), crlf) {
            (false, _) => rest,
            (true, true) => rest.get(..n)?.strip_suffix(b"\r")?,
            (true, false) => rest.get(..n)?,
        };
        if line.is_empty() || line.len() > line_len || line.len() % 4 != 0 {
            return None;
        }
        decode_line(line, true, &mut decoded)?;
        let end = pos + line.len();
        let after = end + if n < rest.len() { eol.len() } else { 0 };
        if msg.get(after).is_some_and(is_base64) {
            return None;
        }
        break end;
    };
    // Room was reserved for the rest of the message; give back what the
    // body did not use.
    decoded.shrink_to_fit();
    Some(Body {
        start,
        end,
        decoded,
        line_len: line_len as u16,
        crlf,
    })
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Alphabet value of each byte; 0xFF for bytes outside the alphabet.
#[allow(clippy::indexing_slicing)] // i < 64 and a byte index a 256-entry table
const DECODE: [u8; 256] = {
    let mut table = [0xFFu8; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// True when `c` is a base64 alphabet character.
fn is_base64(c: &u8) -> bool {
    DECODE.get(*c as usize).is_some_and(|&v| v < 64)
}

/// Decode one line of whole quads onto `out`; `=` padding only in the last
/// quad of the last line, with the bits it leaves unused zero (canonical:
/// the SIMD decoder refuses anything else).
fn decode_line(line: &[u8], last: bool, out: &mut Vec<u8>) -> Option<()> {
    if !last && line.last() == Some(&b'=') {
        return None;
    }
    let from = out.len();
    out.resize(from + line.len() / 4 * 3, 0);
    let decoded = base64_simd::STANDARD
        .decode(line, base64_simd::Out::from_slice(out.get_mut(from..)?))
        .map(|d| d.len());
    match decoded {
        Ok(n) => {
            out.truncate(from + n);
            Some(())
        }
        Err(_) => {
            out.truncate(from);
            None
        }
    }
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
            } => encode_base64_lines(parts.get(*part as usize)?, *line_len, *crlf, &mut out),
        }
    }
    Some(out)
}

/// Standard base64 with padding, in lines of `line_len` characters
/// separated by CRLF or LF, with no line ending after the last line.
pub fn encode_base64_lines(data: &[u8], line_len: u16, crlf: bool, out: &mut Vec<u8>) {
    let line_len = line_len.max(4) / 4 * 4;
    let Some(total) = base64_encoded_len(data.len() as u64, line_len, crlf) else {
        return;
    };
    let from = out.len();
    out.resize(from + total as usize, 0);
    let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
    let per_line = line_len as usize / 4 * 3;
    let Some(mut dst) = out.get_mut(from..) else {
        return;
    };
    for (i, line) in data.chunks(per_line).enumerate() {
        if i > 0 {
            let (e, rest) = dst.split_at_mut(eol.len());
            e.copy_from_slice(eol);
            dst = rest;
        }
        let (text, rest) = dst.split_at_mut(line.len().div_ceil(3) * 4);
        encode_line(line, text);
        dst = rest;
    }
}

/// Two base64 characters for each 12-bit value: half the lookups.
#[allow(clippy::indexing_slicing)] // i < 4096: i >> 6 and i & 63 are below 64
const PAIRS: [[u8; 2]; 4096] = {
    let mut table = [[0u8; 2]; 4096];
    let mut i = 0;
    while i < 4096 {
        table[i] = [ALPHABET[i >> 6], ALPHABET[i & 63]];
        i += 1;
    }
    table
};

/// Encode `data` into exactly `text` (`4 * ceil(len / 3)` characters).
// The hot loop of rebuilding: chunks of exactly 3, indices masked to the
// tables' sizes (24 bits >> 12 and & 0xFFF are below 4096).
#[allow(clippy::indexing_slicing)]
fn encode_line(data: &[u8], text: &mut [u8]) {
    let whole = data.len() / 3 * 3;
    let (body, tail) = data.split_at(whole);
    let (dst, dst_tail) = text.split_at_mut(whole / 3 * 4);
    for (src, d) in body.chunks_exact(3).zip(dst.chunks_exact_mut(4)) {
        let v = (src[0] as usize) << 16 | (src[1] as usize) << 8 | src[2] as usize;
        let [a, b] = PAIRS[v >> 12];
        let [c, e] = PAIRS[v & 0xFFF];
        d.copy_from_slice(&[a, b, c, e]);
    }
    let quad = match *tail {
        [a] => {
            let v = (a as usize) << 4;
            let [x, y] = PAIRS[v];
            [x, y, b'=', b'=']
        }
        [a, b] => {
            let v = (a as usize) << 10 | (b as usize) << 2;
            let [x, y] = PAIRS[v >> 6];
            [x, y, ALPHABET[v & 63], b'=']
        }
        _ => return,
    };
    dst_tail.copy_from_slice(&quad);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole text decoded as one body: bytes, line length, line ending.
    fn decode_exact(text: &[u8]) -> Option<(Vec<u8>, u16, bool)> {
        decode_body(text, 0)
            .filter(|b| b.end == text.len())
            .map(|b| (b.decoded, b.line_len, b.crlf))
    }

    fn b64(data: &[u8], line_len: u16, crlf: bool) -> Vec<u8> {
        let mut v = Vec::new();
        encode_base64_lines(data, line_len, crlf, &mut v);
        v
    }

    #[test]
    fn base64_round_trips_at_every_length() {
        for n in 1..200usize {
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

    /// The parts a message splits into, as (decoded length, line length, crlf).
    fn parts_of(m: &[u8]) -> Vec<(usize, u16, bool)> {
        let Some(s) = split(m) else { return Vec::new() };
        let refs: Vec<&[u8]> = s.parts.iter().map(Vec::as_slice).collect();
        assert_eq!(rebuild(&s.recipe, &refs).unwrap(), m);
        s.recipe
            .pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Base64 {
                    part,
                    line_len,
                    crlf,
                } => Some((s.parts[*part as usize].len(), *line_len, *crlf)),
                Piece::Literal(_) => None,
            })
            .collect()
    }

    fn with_header(header: &str, body: &[u8], after: &str) -> Vec<u8> {
        let mut m = format!("Subject: x\r\nMIME-Version: 1.0\r\n{header}\r\n\r\n").into_bytes();
        m.extend_from_slice(body);
        m.extend_from_slice(after.as_bytes());
        m
    }

    #[test]
    fn the_encoding_header_is_found_in_any_case_and_folded() {
        let data: Vec<u8> = (0..9000u32).map(|i| (i * 13 % 256) as u8).collect();
        let body = b64(&data, 76, true);
        for header in [
            "Content-Transfer-Encoding: base64",
            "content-transfer-encoding:BASE64  ",
            "CONTENT-TRANSFER-ENCODING: Base64",
            "Content-Transfer-Encoding:\r\n\tbase64",
            "Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment",
        ] {
            assert_eq!(
                parts_of(&with_header(header, &body, "")),
                [(9000, 76, true)],
                "{header}"
            );
            assert_eq!(
                parts_of(&with_header(header, &body, "\r\n\r\n--b--\r\n")),
                [(9000, 76, true)]
            );
        }
        // Not a header: not at a line start, another value, or a quoted line.
        for header in [
            "X-Note: Content-Transfer-Encoding: base64",
            "Content-Transfer-Encoding: base64url",
            "Content-Transfer-Encoding: 7bit",
            "Content-Transfer-Encoding:\r\nbase64",
        ] {
            assert!(
                parts_of(&with_header(header, &body, "")).is_empty(),
                "{header}"
            );
        }
    }

    #[test]
    fn a_body_runs_to_a_boundary_an_empty_line_or_the_end_and_no_further() {
        let data: Vec<u8> = (0..9000u32).map(|i| (i * 29 % 256) as u8).collect();
        let cte = "Content-Transfer-Encoding: base64";
        for crlf in [true, false] {
            let body = b64(&data, 64, crlf);
            let eol = if crlf { "\r\n" } else { "\n" };
            for after in [
                String::new(),
                eol.into(),
                format!("{eol}--b--{eol}"),
                format!("{eol}{eol}text"),
            ] {
                assert_eq!(
                    parts_of(&with_header(cte, &body, &after)),
                    [(9000, 64, crlf)]
                );
            }
            // Text straight after the body could be more of it: not taken.
            assert!(parts_of(&with_header(cte, &body, &format!("{eol}Regards"))).is_empty());
            // Blank lines before the body stay in the literal.
            let mut padded = eol.as_bytes().repeat(2);
            padded.extend_from_slice(&body);
            assert_eq!(parts_of(&with_header(cte, &padded, "")), [(9000, 64, crlf)]);
        }
        // Line endings that change halfway: not taken.
        let mut mixed = b64(&data, 76, true);
        let at = mixed.windows(2).rposition(|w| w == b"\r\n").unwrap();
        mixed.remove(at);
        assert!(parts_of(&with_header(cte, &mixed, "")).is_empty());
    }

    #[test]
    fn the_same_attachment_twice_is_one_part_and_nested_messages_are_searched() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
        let body = String::from_utf8(b64(&data, 76, true)).unwrap();
        let m = format!(
            "Content-Type: multipart/mixed; boundary=\"o\"\r\n\r\n--o\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n{body}\r\n--o\r\nContent-Type: message/rfc822\r\n\r\nSubject: fwd\r\nContent-Type: multipart/mixed; boundary=\"i\"\r\n\r\n--i\r\nContent-Transfer-Encoding: base64\r\n\r\n{body}\r\n--i--\r\n\r\n--o--\r\n"
        );
        let s = split(m.as_bytes()).expect("split");
        assert_eq!(s.parts, vec![data]);
        assert_eq!(parts_of(m.as_bytes()).len(), 2);
    }
}
