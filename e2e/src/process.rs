//! Child processes that cannot outlive their test.

use std::{
    ffi::{OsStr, OsString},
    fs::File,
    io::{Read, Seek, SeekFrom},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// A child process whose output goes to a log file. Dropping the guard stops it
/// (SIGTERM, then SIGKILL after a grace period); the kernel kills it too if the test
/// process dies first (parent-death signal).
pub struct ChildGuard {
    name: &'static str,
    child: Mutex<Child>,
    log: PathBuf,
    /// How it was started, to start it again the same way ([`ChildGuard::restart`]).
    recipe: Recipe,
}

/// Program, arguments, environment and directory of a command.
struct Recipe {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, Option<OsString>)>,
    dir: Option<PathBuf>,
}

impl Recipe {
    fn of(cmd: &Command) -> Self {
        Recipe {
            program: cmd.get_program().to_owned(),
            args: cmd.get_args().map(OsStr::to_owned).collect(),
            envs: cmd
                .get_envs()
                .map(|(k, v)| (k.to_owned(), v.map(OsStr::to_owned)))
                .collect(),
            dir: cmd.get_current_dir().map(Path::to_path_buf),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        for (k, v) in &self.envs {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        cmd
    }
}

/// Starts `cmd` with its output going to `log` (appended when `append`) and a
/// parent-death signal.
fn start(mut cmd: Command, log: &Path, append: bool) -> std::io::Result<Child> {
    let out = if append {
        File::options().create(true).append(true).open(log)?
    } else {
        File::create(log)?
    };
    let err = out.try_clone()?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

impl ChildGuard {
    pub fn spawn(name: &'static str, cmd: Command, log: &Path) -> std::io::Result<Self> {
        let recipe = Recipe::of(&cmd);
        let child = start(cmd, log, false)?;
        tracing::debug!(name, pid = child.id(), log = %log.display(), "started");
        Ok(ChildGuard {
            name,
            child: Mutex::new(child),
            log: log.to_path_buf(),
            recipe,
        })
    }

    /// Starts the process again as it was started, appending to its log; kills it first
    /// (SIGKILL, as a crash) if it still runs.
    pub fn start_again(&self) -> std::io::Result<()> {
        let mut child = self
            .child
            .lock()
            .map_err(|_| std::io::Error::other("child lock poisoned"))?;
        let _ = child.kill();
        let _ = child.wait();
        *child = start(self.recipe.command(), &self.log, true)?;
        tracing::debug!(name = self.name, pid = child.id(), "started again");
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().map(|c| c.id()).unwrap_or_default()
    }

    pub fn has_exited(&self) -> bool {
        self.child
            .lock()
            .map(|mut c| matches!(c.try_wait(), Ok(Some(_))))
            .unwrap_or(true)
    }

    /// The last `lines` lines of the log (for failure messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
            let _ = f.read_to_string(&mut text);
        }
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stops the process: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&self, grace: Duration) {
        let Ok(mut child) = self.child.lock() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        tracing::debug!(name = self.name, "killed after grace period");
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&self) {
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}
