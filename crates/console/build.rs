//! Embeds the console's built pages (`console/dist`, made by `npm run build`),
//! each gzipped once here so the binary carries the compressed bytes only.

use std::io::Write;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let dist = manifest.join("../../console/dist");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files = Vec::new();
    if dist.is_dir() {
        walk(&dist, &mut files);
    } else {
        println!(
            "cargo:warning=console/dist is missing, so the console's pages are not embedded: run `npm ci && npm run build` in console/"
        );
    }
    files.sort();
    let mut table = String::from("static EMBEDDED: &[(&str, &[u8])] = &[\n");
    for (index, file) in files.iter().enumerate() {
        println!("cargo:rerun-if-changed={}", file.display());
        let relative = file.strip_prefix(&dist).expect("walked from dist");
        let relative = relative.to_str().expect("asset names are UTF-8");
        let bytes = std::fs::read(file).expect("read an asset");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&bytes).expect("gzip in memory");
        let gzipped = out.join(format!("console-{index}.gz"));
        std::fs::write(&gzipped, encoder.finish().expect("gzip in memory"))
            .expect("write to OUT_DIR");
        table.push_str(&format!(
            "    ({relative:?}, include_bytes!({:?})),\n",
            gzipped.display().to_string()
        ));
    }
    table.push_str("];\n");
    std::fs::write(out.join("assets.rs"), table).expect("write to OUT_DIR");
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read console/dist") {
        let path = entry.expect("read console/dist").path();
        if path.is_dir() {
            walk(&path, files);
        } else {
            files.push(path);
        }
    }
}
