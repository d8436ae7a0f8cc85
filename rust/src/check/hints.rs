//! What a comment or a size says: display resolutions named in comments
//! (`# 4K`, `3440x1440`) and the Looking Glass memory they need.

/// A display resolution named in a comment (`4K`, `1440p`, `3440x1440`):
/// the largest one mentioned, with the words that named it.
pub fn resolution_hint(text: &str) -> Option<(u64, u64, String)> {
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut found: Vec<(u64, u64, String)> = Vec::new();
    // Each resolution with the names it goes by.
    let named: &[(u64, u64, &[&str])] = &[
        (7680, 4320, &["8k", "4320p"]),
        (5120, 2880, &["5k"]),
        (3840, 2160, &["4k", "2160p", "uhd"]),
        (2560, 1440, &["1440p", "wqhd", "qhd"]),
        (1920, 1080, &["1080p", "fhd", "full hd"]),
    ];
    let boundary = |i: usize| i >= bytes.len() || !bytes[i].is_ascii_alphanumeric();
    for (w, h, word) in named
        .iter()
        .flat_map(|(w, h, words)| words.iter().map(move |word| (w, h, word)))
    {
        let mut from = 0;
        while let Some(pos) = lower[from..].find(word) {
            let start = from + pos;
            let end = start + word.len();
            if (start == 0 || !bytes[start - 1].is_ascii_alphanumeric()) && boundary(end) {
                found.push((*w, *h, text[start..end].to_string()));
            }
            from = end;
        }
    }
    // WIDTHxHEIGHT
    let chars: Vec<char> = lower.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_ascii_alphanumeric()) {
            let a_start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let a: String = chars[a_start..i].iter().collect();
            if i < chars.len() && (chars[i] == 'x' || chars[i] == '×') {
                let b_start = i + 1;
                let mut j = b_start;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    j += 1;
                }
                let b: String = chars[b_start..j].iter().collect();
                if let (Ok(w), Ok(h)) = (a.parse::<u64>(), b.parse::<u64>()) {
                    if (640..=16384).contains(&w) && (480..=16384).contains(&h) {
                        let words: String = chars[a_start..j].iter().collect();
                        found.push((w, h, words));
                    }
                }
                i = j;
                continue;
            }
        }
        i += 1;
    }
    found.into_iter().max_by_key(|(w, h, _)| w * h)
}

/// Looking Glass shared memory needed for a resolution, in MiB: two frames
/// of 4 bytes per pixel plus 10 MiB, rounded up to a power of two (the
/// formula of the Looking Glass documentation).
pub fn looking_glass_mib(width: u64, height: u64) -> i64 {
    let bytes = width * height * 4 * 2;
    let mib = bytes.div_ceil(1024 * 1024) + 10;
    i64::try_from(crate::rules::next_power_of_two(mib)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_hints() {
        assert_eq!(resolution_hint("128MB for 4K").map(|r| r.0), Some(3840));
        assert_eq!(resolution_hint("a 1440p screen").map(|r| r.1), Some(1440));
        assert_eq!(
            resolution_hint("ultrawide 3440x1440").map(|r| (r.0, r.1)),
            Some((3440, 1440))
        );
        assert_eq!(resolution_hint("64k of ram, 14k"), None);
        assert_eq!(resolution_hint("nothing here"), None);
        // The largest mentioned wins.
        assert_eq!(
            resolution_hint("1080p now, 4K later").map(|r| r.0),
            Some(3840)
        );
    }

    #[test]
    fn looking_glass_sizes_match_the_guide() {
        assert_eq!(looking_glass_mib(1920, 1080), 32);
        assert_eq!(looking_glass_mib(2560, 1440), 64);
        assert_eq!(looking_glass_mib(3840, 2160), 128);
    }
}
