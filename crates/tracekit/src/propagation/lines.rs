//! Shared helpers for list-valued headers (`tracestate`, `baggage`): combining repeated
//! header lines under a length cap, and trimming optional white space.
//!
//! RFC 9110 §5.3: repeated field lines are combined, in order, with `,`. The combined
//! length is `sum(line lengths) + (lines - 1)`. It is checked *before* any member is
//! parsed, so hostile input (many lines, each under a per-line limit) costs at most
//! `cap` bytes of work (CVE-2026-29181; reliability.md §4.4, lesson 2).

/// The lines of one header name, measured and known to fit under a cap.
pub(crate) enum CombinedLines<'a> {
    /// No line at all.
    Empty,
    /// Exactly one line (the common case; no allocation).
    One(&'a [u8]),
    /// Two or more lines, in order.
    Many(Vec<&'a [u8]>),
}

impl<'a> CombinedLines<'a> {
    /// Collects `lines`, or returns `None` as soon as the combined length (lines joined
    /// with `,`) exceeds `cap`. Never reads a line past the one that crosses the cap.
    pub(crate) fn collect(
        mut lines: impl Iterator<Item = &'a [u8]>,
        cap: usize,
    ) -> Option<CombinedLines<'a>> {
        let Some(first) = lines.next() else {
            return Some(CombinedLines::Empty);
        };
        let mut total = first.len();
        if total > cap {
            return None;
        }
        let Some(second) = lines.next() else {
            return Some(CombinedLines::One(first));
        };
        total += 1 + second.len();
        if total > cap {
            return None;
        }
        let mut all = vec![first, second];
        for line in lines {
            total += 1 + line.len();
            if total > cap {
                return None;
            }
            all.push(line);
        }
        Some(CombinedLines::Many(all))
    }

    /// The comma-separated members of the combined value, untrimmed, in order. A line
    /// boundary is a member boundary (the lines are joined with `,`).
    pub(crate) fn members(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        let lines: &[&'a [u8]] = match self {
            CombinedLines::Empty => &[],
            CombinedLines::One(line) => std::slice::from_ref(line),
            CombinedLines::Many(lines) => lines,
        };
        lines
            .iter()
            .flat_map(|line: &&'a [u8]| line.split(|&b| b == b','))
    }
}

/// Whether `b` is optional white space (RFC 9110 §5.6.3: space or horizontal tab).
#[inline]
pub(crate) const fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `s` without leading and trailing spaces and tabs.
#[inline]
pub(crate) fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_ows(b)).map_or(start, |i| i + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_ows_only_trims_spaces_and_tabs() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"\r\na\n"), b"\r\na\n");
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b""), b"");
    }

    #[test]
    fn combined_length_counts_the_joining_commas() {
        let lines: [&[u8]; 3] = [b"aaaa", b"bb", b"c"];
        // "aaaa,bb,c" is 9 bytes.
        assert!(CombinedLines::collect(lines.iter().copied(), 9).is_some());
        assert!(CombinedLines::collect(lines.iter().copied(), 8).is_none());
        let members: Vec<&[u8]> = CombinedLines::collect(lines.iter().copied(), 9)
            .unwrap()
            .members()
            .collect();
        assert_eq!(members, [&b"aaaa"[..], b"bb", b"c"]);
    }

    #[test]
    fn stops_reading_at_the_cap() {
        let mut read = 0;
        let lines = std::iter::repeat_n(&b"x"[..], 1_000_000).inspect(|_| read += 1);
        assert!(CombinedLines::collect(lines, 100).is_none());
        // 50 lines of one byte make 99 bytes; the 51st crosses the cap.
        assert_eq!(read, 51);
    }
}
