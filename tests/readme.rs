//! The README's two commands stay runnable: `cargo run --release -- demo` must pick the daemon
//! binary (there are two), and `.ci/run` runs the same test command the README gives.

fn file(name: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

#[test]
fn the_readme_commands_are_the_ones_that_work() {
    let readme = file("README.md");
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README.md opens with a sh block");
    let commands: Vec<&str> = block
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .collect();
    assert_eq!(commands, ["cargo run --release -- demo", "cargo test --release"]);

    let manifest = file("Cargo.toml");
    // src/main.rs plus every program cargo finds in src/bin/.
    let bin_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin");
    let bins = 1 + std::fs::read_dir(bin_dir).map_or(0, |d| d.count());
    assert!(
        bins <= 1
            || manifest
                .lines()
                .any(|l| l.trim() == "default-run = \"agentplane\""),
        "{bins} binaries and no default-run: `cargo run` would not know which to run"
    );
    assert!(
        file(".ci/run")
            .lines()
            .any(|l| l.trim() == "cargo test --release"),
        ".ci/run must run the README's test command"
    );
}
