//! The comments around a binding (`# 4K` above `lookingGlass.size`), found
//! in time linear in the file however its lines are laid out.

/// Comment lines above a binding that are read, at most.
const MAX_COMMENT_LINES: usize = 16;
/// Bytes of one comment line that are kept, at most.
const MAX_COMMENT_BYTES: usize = 256;

/// Where the lines and `#` characters of a file are, computed once, so that
/// attaching comments costs the same for every binding however long the
/// file's lines are (one long line of bindings must not make it quadratic).
pub(super) struct Comments {
    /// Offsets of the `\n` characters.
    newlines: Vec<usize>,
    /// Offsets of the `#` characters.
    hashes: Vec<usize>,
    /// Per line: the line, trimmed, is a `#` comment.
    comment_only: Vec<bool>,
}

impl Comments {
    pub(super) fn new(source: &str) -> Comments {
        let bytes = source.as_bytes();
        let newlines: Vec<usize> = memchr_all(bytes, b'\n');
        let hashes: Vec<usize> = memchr_all(bytes, b'#');
        let mut comment_only = Vec::with_capacity(newlines.len() + 1);
        let mut start = 0;
        for end in newlines.iter().copied().chain(std::iter::once(bytes.len())) {
            comment_only.push(source[start..end].trim_start().starts_with('#'));
            start = end + 1;
        }
        Comments {
            newlines,
            hashes,
            comment_only,
        }
    }

    /// The line holding byte `pos` (0-based).
    fn line_of(&self, pos: usize) -> usize {
        self.newlines.partition_point(|&n| n < pos)
    }

    fn line_range(&self, line: usize, len: usize) -> (usize, usize) {
        let start = if line == 0 {
            0
        } else {
            self.newlines[line - 1] + 1
        };
        let end = self.newlines.get(line).copied().unwrap_or(len);
        (start, end)
    }

    /// The comments belonging to a binding at `start..end`: those on the
    /// lines directly above it and the one after it on its last line.
    pub(super) fn around(&self, source: &str, start: usize, end: usize) -> String {
        let clip = |text: &str| -> String {
            let mut cut = MAX_COMMENT_BYTES.min(text.len());
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text[..cut].trim().to_string()
        };
        let mut parts: Vec<String> = Vec::new();
        let first = self.line_of(start.min(source.len()));
        let mut line = first;
        while line > 0 && first - line < MAX_COMMENT_LINES && self.comment_only[line - 1] {
            line -= 1;
        }
        for l in line..first {
            let (a, b) = self.line_range(l, source.len());
            let text = source[a..b].trim_start();
            parts.push(clip(text.strip_prefix('#').unwrap_or(text)));
        }
        // The rest of the binding's last line.
        let end = end.min(source.len());
        let line_end = self.line_range(self.line_of(end), source.len()).1;
        let next_hash = self.hashes.partition_point(|&h| h < end);
        if let Some(&h) = self.hashes.get(next_hash) {
            if h < line_end {
                parts.push(clip(&source[h + 1..line_end]));
            }
        }
        parts.join("\n")
    }
}

fn memchr_all(bytes: &[u8], b: u8) -> Vec<usize> {
    bytes
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == b)
        .map(|(i, _)| i)
        .collect()
}
