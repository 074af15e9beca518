//! Checks Switchboard manifests without a cluster: `switchboard-validate FILE…` (or `-` for
//! standard input). Prints each problem as `FILE: Kind/name: field: message`; exits 1 if any.

use std::process::ExitCode;
use switchboard_crds::documents::parse;

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: switchboard-validate FILE… (- for standard input)");
        return ExitCode::from(2);
    }
    let mut problems = 0usize;
    let mut checked = 0usize;
    for file in &files {
        let text = if file == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(file)
        };
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{file}: {e}");
                problems += 1;
                continue;
            }
        };
        for doc in parse(&text) {
            match doc {
                Err(e) => {
                    println!("{file}: {e}");
                    problems += 1;
                }
                Ok(doc) => {
                    checked += 1;
                    for e in doc.validate() {
                        println!("{file}: {}: {e}", doc.describe());
                        problems += 1;
                    }
                }
            }
        }
    }
    eprintln!("{checked} documents checked, {problems} problems");
    if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
