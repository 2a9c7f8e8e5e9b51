//! Builds the bare-metal guest programs (`guest-tests/`, a separate cargo
//! workspace for `x86_64-unknown-none`) through `scripts/build-guests`, and
//! tells the crate where they are: `env!("VMM_GUESTS_DIR")` holds
//! `<name>.elf` (ELF64) and `<name>.mb.elf` (multiboot ELF32) per guest.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("vmm/ has a parent")
        .to_path_buf();

    // Honour CARGO_TARGET_DIR (relative values are relative to the workspace).
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let target_dir = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                root.join(dir)
            }
        }
        _ => root.join("target"),
    };
    let out = target_dir.join("guests");
    let build_dir = target_dir.join("guest-build");

    let script = root.join("scripts/build-guests");
    for path in [
        "guest-tests/src",
        "guest-tests/Cargo.toml",
        "guest-tests/Cargo.lock",
        "guest-tests/link.ld",
        "guest-tests/build.rs",
        "scripts/build-guests",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    let output = Command::new("bash")
        .arg(&script)
        .arg(&out)
        .env("GUESTS_BUILD_DIR", &build_dir)
        .current_dir(&root)
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) => fail(&script, &format!("could not run bash: {e}"), &[]),
    };
    if !output.status.success() {
        fail(
            &script,
            &format!("it exited with {}", output.status),
            &output.stderr,
        );
    }
    println!("cargo:rustc-env=VMM_GUESTS_DIR={}", out.display());
}

fn fail(script: &Path, why: &str, stderr: &[u8]) -> ! {
    for line in String::from_utf8_lossy(stderr).lines() {
        println!("cargo:warning={line}");
    }
    panic!(
        "building the guest programs with {} failed ({why}); see the warnings above. \
         Needs rustup target x86_64-unknown-none, binutils (objcopy, nm) and bash.",
        script.display()
    );
}
