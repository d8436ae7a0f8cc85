//! Running an external command (virsh, qemu-img) with a deadline.
//!
//! The child is killed when the deadline passes; its output is read by helper
//! threads that are abandoned rather than waited for if something the child
//! started still holds the pipes open, so a hung daemon can never hang sync.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// At most this much of a command's stdout or stderr is kept.
const OUTPUT_LIMIT: u64 = 16 << 20;

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Why a command gave no [`Output`].
#[derive(Debug)]
pub enum RunError {
    /// It could not be started (not installed, not executable).
    Spawn(std::io::Error),
    /// It did not finish (or did not close its output) in time; it was killed.
    TimedOut,
    /// Waiting for it failed.
    Wait(std::io::Error),
}

/// Runs `cmd` with `stdin` as its input, killing it after `limit`.
pub fn run_bounded(
    mut cmd: Command,
    stdin: Option<&str>,
    limit: Duration,
) -> Result<Output, RunError> {
    let deadline = Instant::now() + limit;
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Written from a thread: a child that does not read its input must
        // not block us past the deadline. A write error (the child exited)
        // shows up as the child's own failure.
        let text = text.to_owned();
        thread::spawn(move || {
            let _ = pipe.write_all(text.as_bytes());
        });
    }
    let status = wait_until(&mut child, deadline)?;
    let stdout = collect(&stdout, deadline)?;
    let stderr = collect(&stderr, deadline)?;
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn wait_until(child: &mut Child, deadline: Instant) -> Result<ExitStatus, RunError> {
    let mut pause = Duration::from_millis(2);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {}
            Err(e) => {
                kill(child);
                return Err(RunError::Wait(e));
            }
        }
        let now = Instant::now();
        if now >= deadline {
            kill(child);
            return Err(RunError::TimedOut);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(pipe) = pipe {
            let _ = pipe.take(OUTPUT_LIMIT).read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

fn collect(rx: &mpsc::Receiver<Vec<u8>>, deadline: Instant) -> Result<String, RunError> {
    let left = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(left) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        // The child exited but something it started still holds the pipe.
        Err(_) => Err(RunError::TimedOut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn output_and_status_are_returned() {
        let out = run_bounded(
            sh("cat; echo err >&2; exit 3"),
            Some("in"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.stdout, "in");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn a_command_that_hangs_is_killed_at_the_deadline() {
        let started = Instant::now();
        let err = run_bounded(sh("exec sleep 30"), None, Duration::from_millis(300)).unwrap_err();
        assert!(matches!(err, RunError::TimedOut), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_grandchild_holding_the_pipes_does_not_hang_us() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; exit 0", pid_file.display());
        let started = Instant::now();
        let err = run_bounded(sh(&script), None, Duration::from_millis(500)).unwrap_err();
        assert!(matches!(err, RunError::TimedOut), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // The test started that sleep (through sh); end it by its id.
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let _ = Command::new("kill").arg(pid.trim()).status();
    }

    #[test]
    fn a_child_ignoring_large_input_does_not_block_us() {
        let big = "x".repeat(1 << 20);
        let out = run_bounded(sh("exit 0"), Some(&big), Duration::from_secs(10)).unwrap();
        assert!(out.status.success());
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = run_bounded(
            Command::new("/nonexistent/virsh"),
            None,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, RunError::Spawn(_)));
    }
}
