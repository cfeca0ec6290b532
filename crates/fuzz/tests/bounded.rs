//! The bounded run: every target on its seeds and a fixed number of their mutants.
//! `NIMBUS_FUZZ_EXECUTIONS` changes the count.

fn run(name: &str) {
    let executions = std::env::var("NIMBUS_FUZZ_EXECUTIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let target = nimbus_fuzz::target(name).expect("a target of that name");
    nimbus_fuzz::run_bounded(target, executions);
}

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { run(stringify!($name)); })*

        #[test]
        fn every_target_has_a_test() {
            let tested = [$(stringify!($name)),*];
            for target in nimbus_fuzz::TARGETS {
                assert!(tested.contains(&target.name), "{} is not run", target.name);
            }
        }
    };
}

targets!(
    sigv4, chunked, query, xml, policy, zip, tar, manifest, range, schedule, filter
);
