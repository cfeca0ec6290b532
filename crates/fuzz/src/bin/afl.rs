//! The AFL++ driver (`bench/fuzz.sh`): runs the target named by `NIMBUS_FUZZ_TARGET`
//! on each input AFL gives it. `nimbus-fuzz-afl dictionary` prints the target's
//! tokens in AFL's dictionary format instead.

fn main() {
    let name = std::env::var("NIMBUS_FUZZ_TARGET").unwrap_or_default();
    let Some(target) = nimbus_fuzz::target(&name) else {
        let names: Vec<_> = nimbus_fuzz::TARGETS.iter().map(|t| t.name).collect();
        eprintln!("set NIMBUS_FUZZ_TARGET to one of {}", names.join(", "));
        std::process::exit(2);
    };
    if std::env::args().nth(1).as_deref() == Some("dictionary") {
        for (index, token) in target.dictionary.iter().enumerate() {
            let escaped: String = token
                .bytes()
                .map(|b| match b {
                    b'\\' | b'"' => format!("\\{}", b as char),
                    b' '..=b'~' => (b as char).to_string(),
                    _ => format!("\\x{b:02x}"),
                })
                .collect();
            println!("token{index}=\"{escaped}\"");
        }
        return;
    }
    afl::fuzz!(|data: &[u8]| (target.run)(data));
}
