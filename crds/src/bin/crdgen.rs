//! Prints the CustomResourceDefinitions of weir as YAML, or writes one file per CRD into
//! the directory given as the only argument (`charts/weir/crds`).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let files = weir_crds::crd::files();
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        for (_, yaml) in files {
            print!("---\n{yaml}");
        }
        return ExitCode::SUCCESS;
    };
    for (name, yaml) in files {
        let path = dir.join(name);
        if let Err(e) = std::fs::write(&path, yaml) {
            eprintln!("crdgen: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
