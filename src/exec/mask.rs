//! Secret values masked in a stream of output, however it arrives: a value split across two
//! reads, or one that spans lines (a PEM key), is masked as a whole. Owns no I/O and keeps
//! no more than the longest value, whatever the length of a line.

use crate::template::MASK;

/// Replaces every secret value in a byte stream by [`MASK`], chunk by chunk. A byte is
/// written once it is known not to begin a value: only the last `longest - 1` bytes wait
/// for the next chunk.
///
/// # Caveats
/// A value that contains `*` can match across a mask. Values are compared as bytes: one the
/// command transforms (base64, `\r\n` line ends) is not recognised.
pub struct Masker {
    /// Longest first: at one position, the longest value that matches wins.
    secrets: Vec<Vec<u8>>,
    /// Which bytes begin some value, so most positions cost one lookup.
    starts: [bool; 256],
    longest: usize,
    /// Input not yet decided: it could still begin a value that the next chunk completes.
    pending: Vec<u8>,
}

impl Masker {
    pub fn new(secrets: &[String]) -> Self {
        let mut secrets: Vec<Vec<u8>> =
            secrets.iter().filter(|s| !s.is_empty()).map(|s| s.as_bytes().to_vec()).collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        let mut starts = [false; 256];
        for secret in &secrets {
            starts[usize::from(secret[0])] = true;
        }
        let longest = secrets.first().map_or(0, Vec::len);
        Self { secrets, starts, longest, pending: Vec::new() }
    }

    /// Takes the next chunk of the stream and appends to `out` what is now decided, masked.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.secrets.is_empty() {
            out.extend_from_slice(input);
            return;
        }
        self.pending.extend_from_slice(input);
        let decided = self.scan(out, false);
        self.pending.drain(..decided);
    }

    /// The stream ended: appends the rest. Not called when the stream is cut short, so a
    /// value that was still arriving is dropped rather than half shown.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let decided = self.scan(out, true);
        self.pending.drain(..decided);
    }

    /// The stream was cut short (a daemon the command left holds it): what is held back is
    /// written too, except a tail that could begin a value, which is shown masked. No byte of
    /// a value shows, and none of the command's last output is lost.
    pub fn cut_short(&mut self, out: &mut Vec<u8>) {
        let buf = &self.pending;
        let partial = (0..buf.len()).find(|&at| {
            let tail = &buf[at..];
            self.secrets.iter().any(|s| s.len() > tail.len() && s.starts_with(tail))
        });
        match partial {
            Some(at) => {
                let tail = self.pending.split_off(at);
                self.finish(out);
                if !tail.is_empty() {
                    out.extend_from_slice(MASK.as_bytes());
                }
            }
            None => self.finish(out),
        }
    }

    /// Masks `pending` from its start up to the first position that could begin a value not
    /// yet complete (to its end when `all`); returns how many bytes it decided.
    fn scan(&self, out: &mut Vec<u8>, all: bool) -> usize {
        let buf = &self.pending;
        let mut at = 0;
        let mut copied = 0;
        // Positions past `limit` wait for more input (unless `all`).
        let limit = if all { buf.len() } else { (buf.len() + 1).saturating_sub(self.longest) };
        while at < limit {
            // Straight to the next byte that begins a value.
            match buf[at..limit].iter().position(|&b| self.starts[usize::from(b)]) {
                None => {
                    at = limit;
                    break;
                }
                Some(skip) => at += skip,
            }
            match self.secrets.iter().find(|s| buf[at..].starts_with(s)) {
                Some(secret) => {
                    out.extend_from_slice(&buf[copied..at]);
                    out.extend_from_slice(MASK.as_bytes());
                    at += secret.len();
                    copied = at;
                }
                None => at += 1,
            }
        }
        out.extend_from_slice(&buf[copied..at]);
        at
    }
}

/// `text` masked as one stream.
pub fn mask_all(text: &[u8], secrets: &[String]) -> Vec<u8> {
    let mut masker = Masker::new(secrets);
    let mut out = Vec::with_capacity(text.len());
    masker.push(text, &mut out);
    masker.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_stream_cut_short_keeps_what_was_held_back_and_masks_a_started_value() {
        let secrets = vec!["s3cr3t-value".to_string()];
        let mut m = Masker::new(&secrets);
        let mut out = Vec::new();
        m.push(b"last line\n", &mut out);
        m.cut_short(&mut out);
        assert_eq!(out, b"last line\n");
        let mut m = Masker::new(&secrets);
        let mut out = Vec::new();
        m.push(b"token: s3cr3t", &mut out);
        m.cut_short(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), format!("token: {MASK}"));
    }

    fn masked(chunks: &[&[u8]], secrets: &[&str]) -> String {
        let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        let mut masker = Masker::new(&secrets);
        let mut out = Vec::new();
        for chunk in chunks {
            masker.push(chunk, &mut out);
        }
        masker.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_are_masked_whatever_the_chunks() {
        /// Chunks as they arrive, secret values, what the log gets.
        type Case<'a> = (&'a [&'a [u8]], &'a [&'a str], &'a str);
        let table: &[Case] = &[
            (&[b"token=abc123\n"], &["abc123"], "token=***\n"),
            (&[b"token=abc", b"123\n"], &["abc123"], "token=***\n"),
            (&[b"a", b"b", b"c", b"1", b"2", b"3"], &["abc123"], "***"),
            // A PEM key is one value across lines.
            (
                &[b"-----BEGIN KEY-----\nMIIE\n", b"xyz\n-----END KEY-----\nok\n"],
                &["-----BEGIN KEY-----\nMIIE\nxyz\n-----END KEY-----"],
                "***\nok\n",
            ),
            // The longest value wins where two begin at one place.
            (&[b"pass password"], &["pass", "password"], "*** ***"),
            // A prefix of a value at the end of the stream is not the value.
            (&[b"abc12"], &["abc123"], "abc12"),
            (&[b"no secrets here"], &[], "no secrets here"),
            (&[b"empty values mask nothing"], &[""], "empty values mask nothing"),
        ];
        for (chunks, secrets, expected) in table {
            assert_eq!(masked(chunks, secrets), *expected, "{secrets:?}");
        }
    }

    #[test]
    fn what_waits_for_the_next_chunk_is_shorter_than_the_longest_value() {
        let mut masker = Masker::new(&["0123456789".to_string()]);
        let mut out = Vec::new();
        masker.push(&vec![b'a'; 1 << 20], &mut out);
        assert_eq!(out.len(), (1 << 20) - 9);
        assert!(masker.pending.len() < 10);
    }

    /// Chunk boundaries in `output`, from random cut points.
    fn chunks<'a>(output: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (output.len() + 1)).collect();
        cuts.sort();
        let mut from = 0;
        let mut out = Vec::new();
        for cut in cuts.into_iter().chain([output.len()]) {
            out.push(&output[from..cut]);
            from = cut;
        }
        out
    }

    proptest! {
        /// Issue 12, item 18: for any secret values (newlines included) and any chunking of
        /// the output, no value occurs in what is written, and chunking changes nothing.
        #[test]
        fn no_secret_survives_any_chunking(
            secrets in proptest::collection::vec("[a-z0-9\n=/+-]{1,12}", 1..4),
            parts in proptest::collection::vec(("[a-z0-9 \n=]{0,16}", any::<prop::sample::Index>()), 0..12),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut output = Vec::new();
            for (filler, which) in &parts {
                output.extend_from_slice(filler.as_bytes());
                output.extend_from_slice(secrets[which.index(secrets.len())].as_bytes());
            }
            let mut masker = Masker::new(&secrets);
            let mut written = Vec::new();
            for chunk in chunks(&output, &cuts) {
                masker.push(chunk, &mut written);
            }
            masker.finish(&mut written);
            let text = String::from_utf8(written.clone()).unwrap();
            for secret in &secrets {
                prop_assert!(!text.contains(secret.as_str()), "{secret:?} in {text:?}");
            }
            prop_assert_eq!(written, mask_all(&output, &secrets));
        }
    }
}
