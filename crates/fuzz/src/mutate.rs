//! A small deterministic mutator for the bounded run in `cargo test`: the mutations
//! AFL's havoc stage makes (bit flips, random bytes, inserts, deletes, duplicated
//! runs, splices with another seed, dictionary tokens, boundary numbers), stacked a
//! few at a time, from a generator seeded by the target's name so every run tries
//! the same inputs.

/// Inputs never grow past this: the targets' parsers are all linear or better, and
/// longer inputs only slow the run down.
pub const MAX_INPUT: usize = 64 * 1024;

/// Numbers at the edges of the integer types, as text, where parsers overflow.
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "255",
    "65536",
    "2147483648",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "-0",
];

pub struct Mutator {
    state: u64,
    dictionary: &'static [&'static str],
}

impl Mutator {
    pub fn new(name: &str, dictionary: &'static [&'static str]) -> Self {
        // FNV-1a of the name: a stable, non-zero seed per target.
        let state = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
        Self {
            state: state | 1,
            dictionary,
        }
    }

    /// xorshift64*: plenty for picking mutations.
    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A position in `input`, ends included.
    fn position(&mut self, input: &[u8]) -> usize {
        self.below(input.len() + 1)
    }

    /// Applies one to eight mutations to `input`; `seeds` are spliced from.
    pub fn mutate(&mut self, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
        for _ in 0..1 + self.below(8) {
            self.mutate_once(input, seeds);
        }
        input.truncate(MAX_INPUT);
    }

    fn mutate_once(&mut self, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
        match self.below(10) {
            0 if !input.is_empty() => {
                let at = self.below(input.len());
                input[at] ^= 1 << self.below(8);
            }
            1 if !input.is_empty() => {
                let at = self.below(input.len());
                input[at] = self.next() as u8;
            }
            2 => {
                let at = self.position(input);
                let bytes: Vec<u8> = (0..1 + self.below(4)).map(|_| self.next() as u8).collect();
                input.splice(at..at, bytes);
            }
            3 if !input.is_empty() => {
                let start = self.below(input.len());
                let end = (start + 1 + self.below(16)).min(input.len());
                input.drain(start..end);
            }
            4 if !input.is_empty() => {
                // A run copied elsewhere: repeated elements, nested structures.
                let start = self.below(input.len());
                let end = (start + 1 + self.below(64)).min(input.len());
                let run = input[start..end].to_vec();
                let at = self.position(input);
                input.splice(at..at, run);
            }
            5 if !seeds.is_empty() => {
                // This input's head on another seed's tail.
                let other = &seeds[self.below(seeds.len())];
                let cut = self.position(input);
                let from = self.position(other);
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            6 | 7 if !self.dictionary.is_empty() => {
                let token = self.dictionary[self.below(self.dictionary.len())].as_bytes();
                self.place(input, token);
            }
            8 => {
                let number = NUMBERS[self.below(NUMBERS.len())].as_bytes();
                self.place(input, number);
            }
            _ if !input.is_empty() => {
                let at = self.below(input.len());
                input.truncate(at);
            }
            _ => input.push(self.next() as u8),
        }
    }

    /// Inserts `token`, or writes it over what is there.
    fn place(&mut self, input: &mut Vec<u8>, token: &[u8]) {
        let at = self.position(input);
        if self.next() & 1 == 0 {
            input.splice(at..at, token.iter().copied());
        } else {
            let end = (at + token.len()).min(input.len());
            input.splice(at..end, token.iter().copied());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_name_gives_the_same_mutants() {
        let seeds = vec![b"rate(5 minutes)".to_vec()];
        let run = || {
            let mut mutator = Mutator::new("schedule", &["cron("]);
            (0..50)
                .map(|_| {
                    let mut input = seeds[0].clone();
                    mutator.mutate(&mut input, &seeds);
                    input
                })
                .collect::<Vec<_>>()
        };
        let mutants = run();
        assert_eq!(mutants, run());
        assert!(mutants.iter().any(|m| m != &seeds[0]));
    }
}
