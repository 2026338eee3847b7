//! The one run lifecycle, as a user meets it, for every trainer (`vgrpo
//! train`, `vgrpo sft`, `vgrpo pretrain`) and the pipeline: each test starts
//! the real binary as a subprocess.
//!
//! - A crash (SIGABRT at a named moment, as `kill -9` leaves the disk:
//!   [`vgrpo::run::crash_point`]) before the first checkpoint, while one is
//!   written, or after the last, then `--resume auto`, ends byte-identical
//!   to an uninterrupted run: final weights, metrics, cool-off rows.
//! - Ctrl-C (SIGINT) mid-run finishes the step, writes a checkpoint, prints
//!   the command that continues it and exits with 130; that command ends
//!   byte-identical to an uninterrupted run.
//! - A run directory in use is refused without `--resume`, and a resume
//!   under a config that changes the run's results is refused by key.

mod judge_data;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use vgrpo::run::CRASH_ENV;

const BIN: &str = env!("CARGO_BIN_EXE_vgrpo");

/// The trainers, by subcommand.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Trainer {
    Grpo,
    Sft,
    Pretrain,
}

impl Trainer {
    fn command(self) -> &'static str {
        match self {
            Trainer::Grpo => "train",
            Trainer::Sft => "sft",
            Trainer::Pretrain => "pretrain",
        }
    }

    /// The trainer's section: `steps` updates, a checkpoint every
    /// `save_every` (0: only at the end and on Ctrl-C).
    fn section(self, root: &Path, steps: u64, save_every: u64) -> String {
        match self {
            Trainer::Grpo => format!(
                "[grpo]\nsteps = {steps}\nprompts_per_step = 2\ngroup_size = 2\n\
                 max_new_tokens = 6\nsave_every = {save_every}\nrollouts_dir = \"{}\"\n",
                root.join("rollouts").display()
            ),
            Trainer::Sft => {
                format!("[sft]\nmax_steps = {steps}\nbatch = 2\ncheckpoint_every = {save_every}\n")
            }
            Trainer::Pretrain => format!(
                "[pretrain]\nmanifest = \"{}\"\nsteps = {steps}\nbatch = 2\n\
                 save_every = {save_every}\n\
                 [pretrain.synth]\nvideos = 6\nseed = 11\nseconds = 1.0\n",
                root.join("pre/manifest.jsonl").display()
            ),
        }
    }
}

/// A scratch directory with the judging data set written once.
struct Scratch {
    dir: tempfile::TempDir,
    manifest: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let manifest = judge_data::write_dataset(&dir.path().join("data"));
        Scratch { dir, manifest }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes the config of run `name` and returns its path.
    fn config(&self, trainer: Trainer, name: &str, steps: u64, save_every: u64) -> PathBuf {
        let text = format!(
            "[run]\nname = \"{name}\"\nseed = 5\nout_dir = \"{runs}\"\n\
             [data]\nmanifest = \"{manifest}\"\n\
             [video]\nfps = 8.0\nmin_frames = 2\nmax_frames = 4\ntoken_budget = 16\n\
             workers = 1\nqueue_depth = 2\n\
             [optim]\nlr = 1e-3\n{section}",
            runs = self.root().join("runs").display(),
            manifest = self.manifest.display(),
            section = trainer.section(self.root(), steps, save_every),
        );
        let path = self.root().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn run_dir(&self, name: &str) -> PathBuf {
        self.root().join("runs").join(name)
    }
}

fn command(trainer: Trainer, config: &Path, resume: bool) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg(trainer.command()).arg("--config").arg(config);
    if resume {
        cmd.args(["--resume", "auto"]);
    }
    cmd.env_remove(CRASH_ENV);
    cmd
}

/// Prints what a finished process wrote (shown when a test fails).
fn echoed(out: Output) -> Output {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    eprintln!(
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn output(mut cmd: Command) -> Output {
    echoed(cmd.output().unwrap())
}

fn succeeds(cmd: Command) {
    let out = output(cmd);
    assert!(out.status.success(), "{:?}", out.status);
}

/// The `metrics.jsonl` rows without their wall-clock fields.
fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let mut row: serde_json::Value = serde_json::from_str(line).unwrap();
            let fields = row.as_object_mut().unwrap();
            fields.retain(|key, _| {
                !["seconds", "tokens_per_s", "timing"]
                    .iter()
                    .any(|t| key.contains(t))
            });
            row
        })
        .collect()
}

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Asserts that runs `a` and `b` ended the same: exported weights,
/// metrics and (GRPO) cool-off rows.
fn assert_same_run(s: &Scratch, trainer: Trainer, a: &str, b: &str) {
    let (ra, rb) = (s.run_dir(a), s.run_dir(b));
    assert_eq!(metrics(&ra), metrics(&rb), "metrics of {a} and {b} differ");
    let weights = |r: &Path| bytes(&r.join("final/model.safetensors"));
    assert!(
        weights(&ra) == weights(&rb),
        "final weights of {a} and {b} differ"
    );
    if trainer == Trainer::Grpo {
        let rows = |name: &str| {
            let text = String::from_utf8(bytes(
                &s.root().join(format!("rollouts/{name}/cooloff.jsonl")),
            ))
            .unwrap();
            text.replace(name, "RUN")
        };
        assert_eq!(rows(a), rows(b), "cool-off rows duplicated or lost");
    }
}

/// Crashes `trainer` at each named moment of a 4-step run with a
/// checkpoint every 2 steps, resumes it, and compares it with a straight
/// run.
fn crash_and_resume(trainer: Trainer) {
    let s = Scratch::new();
    succeeds(command(
        trainer,
        &s.config(trainer, "straight", 4, 2),
        false,
    ));
    // Before the first checkpoint, while checkpoint 2 is being written (its
    // files are in the temporary directory), while the last one is, and
    // after the last checkpoint, before the export.
    for point in ["step-1", "checkpoint-2", "checkpoint-4", "export"] {
        let name = format!("crash-{point}");
        let config = s.config(trainer, &name, 4, 2);
        let mut crashed = command(trainer, &config, false);
        crashed.env(CRASH_ENV, point);
        let out = output(crashed);
        assert!(!out.status.success(), "{point}: the run did not crash");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&format!("{CRASH_ENV}={point}")),
            "{point}: crashed elsewhere"
        );
        let checkpoints = s.run_dir(&name).join("checkpoints");
        let leftover = std::fs::read_dir(&checkpoints)
            .map(|d| d.count())
            .unwrap_or(0);
        eprintln!("{point}: {leftover} entries in checkpoints/ after the crash");
        succeeds(command(trainer, &config, true));
        assert_same_run(&s, trainer, "straight", &name);
    }
}

#[test]
fn a_grpo_run_crashed_at_any_moment_resumes_byte_identical() {
    crash_and_resume(Trainer::Grpo);
}

#[test]
fn an_sft_run_crashed_at_any_moment_resumes_byte_identical() {
    crash_and_resume(Trainer::Sft);
}

#[test]
fn a_pretrain_run_crashed_at_any_moment_resumes_byte_identical() {
    crash_and_resume(Trainer::Pretrain);
}

/// Sends SIGINT to `child` once `ready` holds, and waits for it to exit.
fn interrupt_when(mut child: Child, ready: impl Fn() -> bool) -> Output {
    let deadline = Instant::now() + Duration::from_secs(600);
    while !ready() {
        assert!(Instant::now() < deadline, "the run never got going");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it was interrupted");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    echoed(child.wait_with_output().unwrap())
}

fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// Ctrl-C after the first logged step: exit 130, a checkpoint, the resume
/// command printed; running that command ends as a straight run does.
fn interrupt_and_resume(trainer: Trainer, steps: u64) {
    let s = Scratch::new();
    succeeds(command(
        trainer,
        &s.config(trainer, "straight", steps, 0),
        false,
    ));
    let config = s.config(trainer, "stopped", steps, 0);
    let metrics = s.run_dir("stopped").join("metrics.jsonl");
    let out = interrupt_when(spawn(command(trainer, &config, false)), || {
        lines(&metrics) >= 1
    });
    assert_eq!(out.status.code(), Some(130), "{:?}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let resume = format!(
        "vgrpo {} --config {} --resume auto",
        trainer.command(),
        config.display()
    );
    assert!(stdout.contains(&resume), "no resume hint in {stdout:?}");
    let done = lines(&metrics) as u64;
    assert!((1..steps).contains(&done), "{done} of {steps} steps done");
    let latest = s.run_dir("stopped").join("checkpoints/latest");
    assert_eq!(
        std::fs::read_to_string(&latest).unwrap().trim(),
        format!("step_{done:06}"),
        "the checkpoint is the last finished step"
    );
    assert!(!s.run_dir("stopped").join("final").exists());
    succeeds(command(trainer, &config, true));
    assert_same_run(&s, trainer, "straight", "stopped");
}

#[test]
fn ctrl_c_stops_sft_with_a_checkpoint_and_the_resume_command() {
    interrupt_and_resume(Trainer::Sft, 30);
}

#[test]
fn ctrl_c_stops_pretrain_with_a_checkpoint_and_the_resume_command() {
    interrupt_and_resume(Trainer::Pretrain, 200);
}

#[test]
fn ctrl_c_stops_grpo_with_a_checkpoint_and_the_resume_command() {
    interrupt_and_resume(Trainer::Grpo, 12);
}

#[test]
fn a_run_in_use_is_refused_and_a_changed_config_cannot_resume_it() {
    let s = Scratch::new();
    let config = s.config(Trainer::Sft, "used", 2, 0);
    succeeds(command(Trainer::Sft, &config, false));
    let out = output(command(Trainer::Sft, &config, false));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already has a run"), "{err}");
    assert!(err.contains("--resume auto"), "{err}");

    // More steps may be asked of a resume; another learning rate may not.
    let mut longer = command(Trainer::Sft, &config, true);
    longer.args(["--set", "sft.max_steps=3"]);
    succeeds(longer);
    let mut other = command(Trainer::Sft, &config, true);
    other.args(["--set", "optim.lr=0.5", "--set", "sft.max_steps=4"]);
    let out = output(other);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another config"), "{err}");
    assert!(err.contains("optim.lr: 0.001 → 0.5"), "{err}");
    assert!(
        !err.contains("sft.max_steps"),
        "a resumable key is named: {err}"
    );
}

#[test]
fn a_missing_model_is_reported_before_a_run_directory_clash() {
    let s = Scratch::new();
    let config = s.config(Trainer::Sft, "clash", 1, 0);
    succeeds(command(Trainer::Sft, &config, false));
    let mut cmd = command(Trainer::Sft, &config, false);
    cmd.args(["--set", "model.path=no/such/model"]);
    let out = output(cmd);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no/such/model"), "{err}");
    assert!(!err.contains("already has a run"), "{err}");
}

/// A pipeline small enough for a test: the judging set, a few SFT steps,
/// two GRPO steps, evaluations of 96-token answers cut to 8.
fn pipeline_config(s: &Scratch, name: &str) -> PathBuf {
    let text = format!(
        "[run]\nname = \"{name}\"\nseed = 5\nout_dir = \"{runs}\"\n\
         [data]\nmanifest = \"{manifest}\"\n\
         [video]\nfps = 8.0\nmin_frames = 2\nmax_frames = 4\ntoken_budget = 16\n\
         workers = 1\nqueue_depth = 2\n\
         [sft]\nepochs = 12\nbatch = 1\n\
         [grpo]\nsteps = 2\nprompts_per_step = 2\ngroup_size = 2\nmax_new_tokens = 6\n\
         rollouts_dir = \"{rollouts}\"\n\
         [eval]\nmax_new_tokens = 8\nworkers = 1\n\
         [pipeline]\ncooloff_epochs = 1\n\
         [pipeline.sft_optim]\nlr = 1e-3\n\
         [pipeline.grpo_optim]\nlr = 1e-3\n",
        runs = s.root().join("runs").display(),
        manifest = s.manifest.display(),
        rollouts = s.root().join("rollouts").display(),
    );
    let path = s.root().join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn ctrl_c_in_a_pipeline_stage_stops_it_and_a_rerun_continues_there() {
    let s = Scratch::new();
    let pipeline = |config: &Path| {
        let mut cmd = Command::new(BIN);
        cmd.arg("pipeline").arg("--config").arg(config);
        cmd
    };
    succeeds(pipeline(&pipeline_config(&s, "straight")));

    let config = pipeline_config(&s, "stopped");
    let cold = s.run_dir("stopped-cold").join("metrics.jsonl");
    let out = interrupt_when(spawn(pipeline(&config)), || lines(&cold) >= 2);
    assert_eq!(out.status.code(), Some(130), "{:?}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("interrupted in the cold start stage"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("vgrpo pipeline --config {}", config.display())),
        "{stdout}"
    );
    assert!(
        s.run_dir("stopped-cold")
            .join("checkpoints/latest")
            .is_file()
    );
    assert!(!s.run_dir("stopped-grpo").exists(), "the pipeline went on");

    succeeds(pipeline(&config));
    for stage in ["cold", "grpo"] {
        let (a, b) = (format!("straight-{stage}"), format!("stopped-{stage}"));
        let weights = |r: PathBuf| bytes(&r.join("final/model.safetensors"));
        assert!(
            weights(s.run_dir(&a)) == weights(s.run_dir(&b)),
            "{stage}: final weights differ"
        );
    }
    assert_eq!(
        bytes(&s.run_dir("straight").join("pipeline.md")),
        bytes(&s.run_dir("stopped").join("pipeline.md")),
        "stage tables differ"
    );
}

/// Two branches of one pipeline (`pipeline.branch`) train and judge the
/// shared cold start once: the second invocation reuses its model and its
/// evaluation, and trains GRPO under the branch's name with the branch's
/// settings; each branch writes its own stage table.
#[test]
fn branches_share_the_cold_start_and_differ_from_grpo_on() {
    let s = Scratch::new();
    let config = pipeline_config(&s, "tree");
    let branch = |name: &str, reward: &str| {
        let mut cmd = Command::new(BIN);
        cmd.arg("pipeline").arg("--config").arg(&config);
        for set in [
            format!("pipeline.branch={name}"),
            format!("grpo.accuracy_reward={reward}"),
        ] {
            cmd.args(["--set", &set]);
        }
        cmd
    };
    let text = |path: PathBuf| String::from_utf8(bytes(&path)).unwrap();
    let table = |name: &str| text(s.run_dir("tree").join(format!("pipeline-{name}.md")));

    succeeds(branch("a", "exact"));
    let cold = s.run_dir("tree-cold");
    let shared = [
        "metrics.jsonl",
        "final/model.safetensors",
        "eval/report.json",
    ];
    let stamps = || shared.map(|f| std::fs::metadata(cold.join(f)).unwrap().modified().unwrap());
    let before = stamps();
    let out = output(branch("b", "distance"));
    assert!(out.status.success(), "{:?}", out.status);
    let table_b = s.run_dir("tree").join("pipeline-b.md");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("table written to {}", table_b.display())),
        "{stdout}"
    );

    assert_eq!(
        stamps(),
        before,
        "the cold start was trained or judged again"
    );
    assert!(
        !s.run_dir("tree-grpo").exists(),
        "an unbranched GRPO stage ran"
    );
    assert!(!s.run_dir("tree").join("pipeline.md").exists());
    let mut cold_rows = Vec::new();
    for (name, reward) in [("a", "exact"), ("b", "distance")] {
        let grpo = s.run_dir(&format!("tree-grpo-{name}"));
        assert!(
            grpo.join("final/model.safetensors").is_file(),
            "branch {name}"
        );
        let cfg: toml::Value = toml::from_str(&text(grpo.join("config.toml"))).unwrap();
        assert_eq!(cfg["grpo"]["accuracy_reward"].as_str(), Some(reward));
        let table = table(name);
        assert!(table.contains("| + GRPO"), "{table}");
        let row = table.lines().find(|l| l.starts_with("| SFT cold start"));
        cold_rows.push(row.expect("a cold-start row").to_string());
    }
    assert_eq!(
        cold_rows[0], cold_rows[1],
        "the branches judged different cold starts"
    );
}
