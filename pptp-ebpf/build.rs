//! Rebuild when bpf-linker changes: cargo does not track linkers, and a stale object linked by an
//! older bpf-linker is exactly the kind of silent mismatch we do not want.
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => println!("cargo:warning=bpf-linker not found on PATH"),
    }
}
