//! A panic can neither go unseen nor leak: run in a child process (a panic hook is global to the
//! process), a handler panics with a phone number in its message, and the parent reads all the
//! child wrote. With Herald's hook, the log names the location, the `Panics` metric counts it,
//! and the number is nowhere. The control run, without the hook, shows the same panic printing
//! the number (Rust's default hook), so the search would find it.

use std::process::Command;

const NUMBER: &str = "+12025550199";
const CHILD: &str = "HERALD_PANIC_HOOK_CHILD";

/// The child's part: logs as a function does, then a handler panics inside `panics::catch`.
#[test]
fn child() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    herald::telemetry::init();
    if mode == "hook" {
        herald::panics::install_hook("test-function");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let caught = rt.block_on(herald::panics::catch(async {
        let to = std::hint::black_box(NUMBER);
        panic!("could not send to {to}");
    }));
    assert_eq!(caught, Err(herald::panics::Panicked));
    println!("child: caught");
}

/// Runs [`child`] alone in a new process and returns what it wrote (stdout, stderr).
fn run_child(mode: &str) -> (String, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD, mode)
        .env("HERALD_LOG", "info")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("child: caught"), "{stdout}");
    (stdout, stderr)
}

/// The JSON object on a line (libtest may have written `test child ... ` before it).
fn json_line(line: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&line[line.find('{')?..]).ok()
}

#[test]
fn a_panic_is_logged_with_its_location_and_counted_but_its_message_is_withheld() {
    let (stdout, stderr) = run_child("hook");
    let all = format!("{stdout}{stderr}");
    assert!(!all.contains(NUMBER), "the panic's message leaked:\n{all}");
    assert!(
        !all.contains("could not send"),
        "the panic's message leaked:\n{all}"
    );
    let logged = stderr
        .lines()
        .filter_map(json_line)
        .find(|l| l["panic.file"].is_string())
        .unwrap_or_else(|| panic!("no panic log line in:\n{stderr}"));
    assert_eq!(logged["level"], "ERROR");
    assert_eq!(logged["function"], "test-function");
    assert!(
        logged["panic.file"]
            .as_str()
            .unwrap()
            .ends_with("panic_hook.rs"),
        "{logged}"
    );
    assert!(logged["panic.line"].as_u64().unwrap() > 0, "{logged}");
    let metric = stdout
        .lines()
        .filter_map(json_line)
        .find(|l| l.get(herald::panics::METRIC).is_some())
        .unwrap_or_else(|| panic!("no Panics metric in:\n{stdout}"));
    assert_eq!(metric[herald::panics::METRIC], 1.0);
    assert_eq!(metric["Function"], "test-function");
    assert_eq!(
        metric["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "Herald"
    );
}

/// The control: without the hook the same panic prints its message, number and all.
#[test]
fn without_the_hook_the_default_one_prints_the_message() {
    let (stdout, stderr) = run_child("default");
    assert!(
        stderr.contains(NUMBER),
        "the default hook printed:\n{stderr}"
    );
    assert!(!stdout.contains(herald::panics::METRIC), "{stdout}");
}
