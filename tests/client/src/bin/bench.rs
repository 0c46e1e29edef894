//! fractality-bench: generates the benchmark data (or reuses it), runs the scenarios, prints the
//! results as a markdown table and appends them to a results file. `scripts/bench.sh` sets up
//! the server and calls it.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use fractality_client::bench::{self, Ctx, DataSource, Report, Scenario};
use fractality_client::datagen::{self, Error, Params};
use postgres::{Client, NoTls};

const USAGE: &str = "\
usage: fractality-bench [options] [scenario ...]

options:
  --url CONNINFO  server to use (default: host=localhost port=54332 user=postgres dbname=fractality_bench)
  --nodes N       nodes to generate (default 100000)
  --events N      experience events to generate (default 1000000)
  --users N       tenants (default 100)
  --seed S        random seed (default 42)
  --reps N        repetitions of each measurement (default: each scenario's own)
  --out PATH      results file to append to (default target/bench-results.md)
  --reuse         keep the data an earlier run loaded with the same scale and seed
  --list          list the scenarios and exit
  -h, --help      this help

The database must have the extension installed (CREATE EXTENSION fractality CASCADE); the
generator empties and refills fractality's tables. Scenarios run in the order given; none or
'all' runs every one but resonance_1536, which runs only when named: it loads --nodes
embeddings of 1536 dimensions for 20 tenants of its own (kept for --reuse; removed before any
other scenario runs).";

struct Opts {
    url: String,
    nodes: usize,
    events: usize,
    users: usize,
    seed: u64,
    reps: Option<usize>,
    out: PathBuf,
    reuse: bool,
    list: bool,
    help: bool,
    scenarios: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        url: "host=localhost port=54332 user=postgres dbname=fractality_bench".into(),
        nodes: 100_000,
        events: 1_000_000,
        users: 100,
        seed: 42,
        reps: None,
        out: PathBuf::from("target/bench-results.md"),
        reuse: false,
        list: false,
        help: false,
        scenarios: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let number = |v: String| -> Result<u64, String> {
            v.replace('_', "")
                .parse::<u64>()
                .map_err(|_| format!("{flag}: '{v}' is not a non-negative integer"))
        };
        match flag {
            "--url" => o.url = value()?,
            "--nodes" => o.nodes = number(value()?)? as usize,
            "--events" => o.events = number(value()?)? as usize,
            "--users" => o.users = number(value()?)? as usize,
            "--seed" => o.seed = number(value()?)?,
            "--reps" => o.reps = Some(number(value()?)? as usize),
            "--out" => o.out = PathBuf::from(value()?),
            "--reuse" => o.reuse = true,
            "--list" => o.list = true,
            "-h" | "--help" => o.help = true,
            f if f.starts_with('-') => return Err(format!("unknown option {f}")),
            name => o.scenarios.push(name.to_string()),
        }
    }
    if o.nodes < 10 {
        return Err("--nodes must be at least 10".into());
    }
    if o.users == 0 || o.users > o.nodes {
        return Err("--users must be between 1 and --nodes".into());
    }
    if o.reps == Some(0) {
        return Err("--reps must be at least 1".into());
    }
    Ok(o)
}

const DATASET: &str = "public.fractality_bench_dataset";

/// The anchor time of the data an earlier run loaded with these parameters, if any.
fn loaded_anchor(client: &mut Client, p: &Params) -> Result<Option<i64>, Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&DATASET])?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client.query_opt(
        &format!(
            "SELECT anchor_us FROM {DATASET}
              WHERE seed = $1 AND nodes = $2 AND events = $3 AND users = $4"
        ),
        &[
            &(p.seed as i64),
            &(p.nodes as i64),
            &(p.events as i64),
            &(p.users as i64),
        ],
    )?;
    Ok(row.map(|r| r.get(0)))
}

fn record_dataset(client: &mut Client, p: &Params) -> Result<(), Error> {
    client.batch_execute(&format!(
        "DROP TABLE IF EXISTS {DATASET};
         CREATE TABLE {DATASET} (seed bigint, nodes bigint, events bigint, users bigint,
                                 anchor_us bigint, loaded_at timestamptz DEFAULT now())"
    ))?;
    client.execute(
        &format!("INSERT INTO {DATASET} (seed, nodes, events, users, anchor_us) VALUES ($1, $2, $3, $4, $5)"),
        &[
            &(p.seed as i64),
            &(p.nodes as i64),
            &(p.events as i64),
            &(p.users as i64),
            &p.anchor_us,
        ],
    )?;
    Ok(())
}

fn run(o: &Opts, scenarios: &[&'static Scenario], command: String) -> Result<bool, Error> {
    let mut client = Client::connect(&o.url, NoTls)
        .map_err(|e| format!("cannot connect to '{}': {}", o.url, chain(&e)))?;
    let machine = bench::machine(&mut client)?;
    if machine.fractality == "-" {
        return Err("the extension fractality is not installed in this database".into());
    }
    let now_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64 * 1_000_000;
    let mut params = Params {
        seed: o.seed,
        nodes: o.nodes,
        events: o.events,
        users: o.users,
        anchor_us: now_us,
    };

    let reused = if o.reuse {
        loaded_anchor(&mut client, &params)?
    } else {
        None
    };
    let data = match reused {
        Some(anchor_us) => {
            params.anchor_us = anchor_us;
            eprintln!(
                "reusing the loaded data (seed {}, {} nodes, {} events)",
                o.seed, o.nodes, o.events
            );
            DataSource::Reused
        }
        None => {
            eprintln!(
                "generating and loading {} nodes, {} events (seed {})",
                o.nodes, o.events, o.seed
            );
            let steps = datagen::load(&mut client, &params)?;
            record_dataset(&mut client, &params)?;
            DataSource::Loaded(steps)
        }
    };

    let mut results = Vec::new();
    let mut failure = None;
    for s in scenarios {
        eprintln!("scenario {}: {}", s.name, s.about);
        if s.name != "resonance_1536" {
            // the other scenarios measure the generated graph alone
            if let Err(e) = fractality_client::bench_resonance::remove_1536(&mut client) {
                failure = Some(format!("removing resonance_1536's data: {}", describe(&*e)));
                break;
            }
        }
        let mut ctx = Ctx {
            client: &mut client,
            params: &params,
            reps: o.reps,
        };
        match (s.run)(&mut ctx) {
            Ok(rows) => results.push((*s, rows)),
            Err(e) => {
                failure = Some(format!("scenario {}: {}", s.name, describe(&*e)));
                break;
            }
        }
    }

    let report = Report {
        machine: &machine,
        params: &params,
        command,
        data: &data,
        results: &results,
        failure: failure.clone(),
    };
    let text = report.markdown();
    println!("\n{text}");
    if let Some(dir) = o.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&o.out)
        .map_err(|e| format!("cannot open {}: {e}", o.out.display()))?;
    writeln!(file, "{text}")?;
    eprintln!("results appended to {}", o.out.display());
    if let Some(f) = failure {
        eprintln!("fractality-bench: {f}");
    }
    Ok(results.len() == scenarios.len())
}

/// An error with its causes: "error connecting to server: Connection refused (os error 111)".
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out = format!("{out}: {text}");
        }
        cause = c.source();
    }
    out
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fractality-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if opts.help {
        println!("{USAGE}\n\nscenarios: {}", bench::known_names());
        return ExitCode::SUCCESS;
    }
    if opts.list {
        for s in bench::SCENARIOS {
            let note = if s.in_all { "" } else { " (only when named)" };
            println!("{:<15} {}{note}", s.name, s.about);
        }
        return ExitCode::SUCCESS;
    }
    let scenarios = match bench::select(&opts.scenarios) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fractality-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let mut command = format!(
        "fractality-bench --nodes {} --events {} --users {} --seed {}",
        opts.nodes, opts.events, opts.users, opts.seed
    );
    if let Some(r) = opts.reps {
        command += &format!(" --reps {r}");
    }
    if opts.reuse {
        command += " --reuse";
    }
    for s in &scenarios {
        command += &format!(" {}", s.name);
    }
    match run(&opts, &scenarios, command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fractality-bench: error: {}", chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// An error with its causes: a database error's own message, not only "db error".
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
