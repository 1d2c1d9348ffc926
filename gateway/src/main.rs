//! The `gateway` command: `run` serves a config, `check` validates one,
//! `openapi export` describes what one serves as an OpenAPI document,
//! `hash-key` and `hash-password` print the stored forms of credentials.

use anyhow::Context as _;
use arc_swap::ArcSwap;
use clap::{Parser, Subcommand, ValueEnum};
use gateway::config::{AdminSettings, ListenerSettings, Source};
use gateway::plugin::PluginEngine;
use gateway::reload::Reloader;
use gateway::server::serve;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "A programmable API gateway with WebAssembly plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the given config.
    Run {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Log format on stderr.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Validate a config (including compiling and initialising its plugins) and exit.
    Check {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the stored form of an API key (`hmac-sha256:...`) for a consumer's
    /// `keys = [{ hash = "..." }]`. Reads the key from stdin and the secret from
    /// the environment variable named by --secret-env.
    HashKey {
        /// The environment variable holding `identity.key_hash_secret`.
        #[arg(long, default_value = "GATEWAY_KEY_HASH_SECRET")]
        secret_env: String,
    },
    /// Print the stored form of a basic-auth password (`$argon2id$...` by
    /// default) for a consumer's `passwords = [{ hash = "..." }]`. Reads the
    /// password from stdin: one line, its line break dropped, spaces kept.
    HashPassword {
        /// The hash to write: argon2id (recommended), or bcrypt or
        /// pbkdf2-sha256 where another system must read it too.
        #[arg(long, value_enum, default_value_t = PasswordAlgorithm::Argon2id)]
        algorithm: PasswordAlgorithm,
    },
    /// Scaffold something new.
    New {
        #[command(subcommand)]
        what: New,
    },
    /// OpenAPI documents of what a config serves.
    Openapi {
        #[command(subcommand)]
        what: Openapi,
    },
}

#[derive(Subcommand)]
enum Openapi {
    /// Print (as JSON, which is also YAML) an OpenAPI 3.1.0 document of the
    /// config's APIs and hand-written routes, after checking the config as
    /// `check` does; what OpenAPI cannot describe is left out, said on stderr.
    Export {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Only this API (`[apis.NAME]`), its paths under its base_path.
        #[arg(long)]
        api: Option<String>,
    },
}

#[derive(Subcommand)]
enum New {
    /// A plugin crate of its own that builds, tests and loads as it is.
    Plugin {
        /// The crate's name (lowercase letters, digits and `-`).
        name: String,
        /// Where to create it (default: ./NAME); must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The plugin-sdk crate to depend on (default: this gateway's own).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum PasswordAlgorithm {
    Argon2id,
    Bcrypt,
    #[value(name = "pbkdf2-sha256")]
    Pbkdf2Sha256,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config, log_format } => {
            init_logging(log_format);
            run(config)
        }
        Command::Check { config } => {
            init_logging(LogFormat::Text);
            check(config)
        }
        Command::HashKey { secret_env } => hash_key(&secret_env),
        Command::HashPassword { algorithm } => hash_password(algorithm),
        Command::New {
            what: New::Plugin { name, dir, sdk },
        } => new_plugin(&name, dir, sdk),
        Command::Openapi {
            what: Openapi::Export { config, api },
        } => {
            init_logging(LogFormat::Text);
            openapi_export(&config, api.as_deref())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn new_plugin(name: &str, dir: Option<PathBuf>, sdk: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    // The SDK next to the crate this binary was built from.
    let sdk = sdk.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk"));
    let spec = gateway::scaffold::NewPlugin {
        name,
        dir: &dir,
        sdk: &sdk,
    };
    let written = gateway::scaffold::new_plugin(&spec).map_err(anyhow::Error::msg)?;
    for file in written {
        println!("created {}", file.display());
    }
    println!(
        "next: cd {} && cargo test && cargo build --release --target wasm32-wasip2 && gateway check --config gateway.toml",
        dir.display()
    );
    Ok(())
}

fn hash_key(secret_env: &str) -> anyhow::Result<()> {
    let secret = std::env::var(secret_env)
        .with_context(|| format!("set {secret_env} to the identity.key_hash_secret value"))?;
    let mut key = String::new();
    std::io::stdin()
        .read_line(&mut key)
        .context("cannot read the key from stdin")?;
    let key = key.trim_end_matches(['\r', '\n']);
    gateway::identity::check_key_text(key).map_err(anyhow::Error::msg)?;
    println!("{}", gateway::identity::hash_key(secret.as_bytes(), key));
    Ok(())
}

fn hash_password(algorithm: PasswordAlgorithm) -> anyhow::Result<()> {
    use gateway::identity::passwords::{Algorithm, hash_password};
    use std::io::Read as _;
    let mut input = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut input)
        .context("cannot read the password from stdin (one line of UTF-8)")?;
    let password = input.strip_suffix('\n').map_or(input.as_str(), |line| {
        line.strip_suffix('\r').unwrap_or(line)
    });
    if password.contains(['\n', '\r']) {
        anyhow::bail!("give the password on one line of stdin, and nothing after it");
    }
    let algorithm = match algorithm {
        PasswordAlgorithm::Argon2id => Algorithm::Argon2id,
        PasswordAlgorithm::Bcrypt => Algorithm::Bcrypt,
        PasswordAlgorithm::Pbkdf2Sha256 => Algorithm::Pbkdf2Sha256,
    };
    println!(
        "{}",
        hash_password(password, algorithm).map_err(anyhow::Error::msg)?
    );
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn async_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn check(path: PathBuf) -> anyhow::Result<()> {
    let engine = PluginEngine::new()?;
    let (config, runtime) = async_runtime()?.block_on(gateway::load(&path, &engine))?;
    // An inherited entry is one entry, however many routes run it.
    let mut entries: Vec<*const gateway::pipeline::Entry> = runtime
        .routes
        .iter()
        .flat_map(|r| r.pipeline.entries().iter().map(Arc::as_ptr))
        .collect();
    entries.sort();
    entries.dedup();
    let plugins = entries.len();
    println!(
        "{}: OK ({} routes, {} upstreams, {} plugin entries)",
        path.display(),
        runtime.routes.len(),
        config.upstreams.len(),
        plugins
    );
    for route in &runtime.routes {
        println!("  {}", effective_pipeline(route));
    }
    Ok(())
}

/// `gateway openapi export`: the config checked as a whole (a broken one
/// is refused with its errors), then its document on stdout and what it
/// leaves out on stderr.
fn openapi_export(path: &Path, api: Option<&str>) -> anyhow::Result<()> {
    let engine = PluginEngine::new()?;
    let (config, _runtime) = async_runtime()?.block_on(gateway::load(path, &engine))?;
    let base = Source::read(path)?.base_dir();
    let title = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let exported = gateway::openapi::export::export(&base, &config, api, &title)
        .map_err(anyhow::Error::msg)?;
    for note in &exported.notes {
        eprintln!("note: {note}");
    }
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &exported.document)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// One route's pipeline as it runs, for `gateway check`, an entry named
/// other than its plugin as `name=plugin`: ``route `api`: key-auth
/// (global), stamp=headers (replaces inherited), cors; switched off: acl``.
fn effective_pipeline(route: &gateway::runtime::Route) -> String {
    let entries: Vec<String> = route
        .pipeline
        .entries()
        .iter()
        .map(|entry| {
            let named = match entry.name == entry.reference {
                true => entry.reference.clone(),
                false => format!("{}={}", entry.name, entry.reference),
            };
            match entry.level {
                gateway::pipeline::Level::Global => format!("{named} (global)"),
                gateway::pipeline::Level::Replacement => format!("{named} (replaces inherited)"),
                gateway::pipeline::Level::Api => format!("{named} (api)"),
                gateway::pipeline::Level::Route => named,
            }
        })
        .collect();
    let mut line = format!("route `{}`: ", route.name);
    line.push_str(&match entries.is_empty() {
        true => "no plugins".to_string(),
        false => entries.join(", "),
    });
    if !route.switched_off.is_empty() {
        line.push_str(&format!(
            "; switched off: {}",
            route.switched_off.join(", ")
        ));
    }
    line
}

/// `gateway run`: builds the config, binds the listeners, starts one worker
/// per core, then runs the control loop (reloads, admin, signals) on this
/// thread until the shutdown sequence ends.
fn run(path: PathBuf) -> anyhow::Result<()> {
    let engine = PluginEngine::new()?;
    let source = Source::read(&path)?;
    let config = source.parse()?;
    // Upstreams get one connection pool per worker, so the count comes
    // before the build (which checks it with the rest of `[server]`).
    gateway::worker::set_count(config.server.worker_count());
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the control runtime")?;
    // Listening for SIGTERM and SIGINT before saying we listen: a signal sent
    // as soon as the listening line appears must drain, not kill.
    let signals = {
        let _inside = control.enter();
        ShutdownSignals::new()
    };
    let runtime = control.block_on(gateway::build(&source, &config, &engine, None))?;
    let server = runtime.server.clone();
    let runtime = Arc::new(ArcSwap::from_pointee(runtime));
    let reloader = Arc::new(Reloader::new(
        path.clone(),
        &source,
        &config,
        engine.clone(),
        runtime.clone(),
    ));
    // Watches are in place before the gateway says it listens, so no change
    // made after that line is missed.
    let watching = reloader.clone().watch();
    let bound = bind_listeners(&server.listeners, server.workers)?;
    announce(&bound, &runtime)?;
    let admin = admin_listener(server.admin.as_ref())?;
    announce_more(&bound)?;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let threads = start_workers(bound, &runtime, server.listener, stopped)?;

    // Reloads, the admin listener and signals run on this thread, off the
    // workers' request path.
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let joined = control.block_on(async {
        if let Some(watching) = watching {
            tokio::spawn(watching);
        }
        tokio::spawn(reload_on_sighup(reloader.clone()));
        if let Some((listener, token)) = admin {
            let admin = gateway::admin::Admin {
                runtime: runtime.clone(),
                services: engine.services().clone(),
                reloader: reloader.clone(),
                draining: draining.clone(),
                token,
            };
            serve_admin(Arc::new(admin), listener);
        }
        shut_down(signals, &draining, &runtime, stop, threads).await
    });
    // Without waiting for a blocking join still running after a signal cut
    // the drain short.
    control.shutdown_background();
    joined.context("cannot join the worker threads")??;
    // Keep the engine alive until serving ends.
    drop(engine);
    Ok(())
}

/// A listener's sockets, one per worker (`SO_REUSEPORT`).
struct Bound {
    name: Arc<str>,
    tls: bool,
    sockets: Vec<std::net::TcpListener>,
}

/// Binds every listener, `default` first, with one socket per worker.
fn bind_listeners(
    listeners: &[gateway::config::Listener],
    workers: usize,
) -> anyhow::Result<Vec<Bound>> {
    listeners
        .iter()
        .map(|listener| {
            let addr = listener.addr;
            let sockets = gateway::worker::bind(addr, workers).with_context(|| {
                format!("cannot listen on {addr} (listener `{}`)", listener.name)
            })?;
            Ok(Bound {
                name: Arc::from(listener.name.as_str()),
                tls: listener.tls,
                sockets,
            })
        })
        .collect()
}

/// Where a listener listens, as its announcement says it.
fn address(bound: &Bound) -> anyhow::Result<String> {
    let socket = bound.sockets.first().context("no listener was bound")?;
    let scheme = if bound.tls { "https" } else { "http" };
    Ok(format!("{scheme}://{}", socket.local_addr()?))
}

/// Says where the gateway listens: on stdout (tests and scripts read this
/// line to learn the port when listen uses :0) and in the log.
fn announce(bound: &[Bound], runtime: &ArcSwap<gateway::runtime::Runtime>) -> anyhow::Result<()> {
    let default = bound.first().context("no listener was bound")?;
    let local = address(default)?;
    println!("gateway listening on {local}");
    std::io::stdout().flush()?;
    let (workers, routes) = (default.sockets.len(), runtime.load().routes.len());
    tracing::info!(%local, workers, routes, "serving");
    Ok(())
}

/// Says where each `[[listeners]]` entry listens, one stdout line each
/// (`listener NAME listening on URL`), after the default's and the admin's.
fn announce_more(bound: &[Bound]) -> anyhow::Result<()> {
    let mut lines = String::new();
    for listener in bound.iter().skip(1) {
        let local = address(listener)?;
        lines.push_str(&format!(
            "listener {} listening on {local}\n",
            listener.name
        ));
        tracing::info!(listener = %listener.name, %local, "serving");
    }
    print!("{lines}");
    std::io::stdout().flush()?;
    Ok(())
}

/// The admin listener, bound and announced, when the config has one.
fn admin_listener(
    admin: Option<&AdminSettings>,
) -> anyhow::Result<Option<(std::net::TcpListener, Option<Vec<u8>>)>> {
    let Some(AdminSettings { addr, token }) = admin else {
        return Ok(None);
    };
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on {addr} (admin)"))?;
    listener.set_nonblocking(true)?;
    println!("admin listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    Ok(Some((listener, token.clone())))
}

/// Serves the admin API on the control thread's runtime.
fn serve_admin(admin: Arc<gateway::admin::Admin>, listener: std::net::TcpListener) {
    match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => {
            tokio::spawn(admin.serve(listener));
        }
        Err(err) => tracing::error!(%err, "cannot serve the admin listener"),
    }
}

/// One thread per worker, each with its own current-thread runtime serving
/// its socket of every listener until `stopped` turns true.
fn start_workers(
    bound: Vec<Bound>,
    runtime: &Arc<ArcSwap<gateway::runtime::Runtime>>,
    settings: ListenerSettings,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<std::thread::JoinHandle<anyhow::Result<()>>>> {
    // sockets[worker]: (listener name, its socket, TLS acceptor).
    let workers = bound.first().map_or(0, |b| b.sockets.len());
    let mut sockets: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
    for listener in bound {
        let tls = listener
            .tls
            .then(|| gateway::server::Acceptor::new(runtime.clone(), listener.name.clone()));
        for (worker, socket) in listener.sockets.into_iter().enumerate() {
            if let Some(mine) = sockets.get_mut(worker) {
                mine.push((listener.name.clone(), socket, tls.clone()));
            }
        }
    }
    let mut threads = Vec::with_capacity(workers);
    for (index, mine) in sockets.into_iter().enumerate() {
        let runtime = runtime.clone();
        let stopped = stopped.clone();
        let thread = std::thread::Builder::new()
            .name(format!("worker-{index}"))
            .spawn(move || -> anyhow::Result<()> {
                gateway::worker::enter(index);
                let tokio = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start a worker runtime")?;
                tokio.block_on(async move {
                    let mut serving = tokio::task::JoinSet::new();
                    for (name, socket, tls) in mine {
                        let socket = tokio::net::TcpListener::from_std(socket)?;
                        let mut stopped = stopped.clone();
                        let shutdown = async move {
                            let _ = stopped.wait_for(|stop| *stop).await;
                        };
                        serving.spawn(serve(
                            socket,
                            name,
                            runtime.clone(),
                            settings,
                            tls,
                            shutdown,
                        ));
                    }
                    serving.join_all().await;
                    Ok(())
                })
            })
            .context("cannot start a worker thread")?;
        threads.push(thread);
    }
    Ok(threads)
}

/// The shutdown sequence, from the first signal: not ready (`/readyz`),
/// serving on for `shutdown_delay` (a second signal cuts it short), then the
/// workers drain (a further signal ends the drain at once).
async fn shut_down(
    mut signals: ShutdownSignals,
    draining: &std::sync::atomic::AtomicBool,
    runtime: &ArcSwap<gateway::runtime::Runtime>,
    stop: tokio::sync::watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<anyhow::Result<()>>>,
) -> Result<anyhow::Result<()>, tokio::task::JoinError> {
    signals.recv().await;
    tracing::info!("shutdown requested");
    // Not ready any more (the admin API keeps answering while workers
    // drain, so a load balancer polling /readyz sees it).
    draining.store(true, std::sync::atomic::Ordering::Relaxed);
    // Serving on for a while lets load balancers take the gateway out of
    // rotation before its listener closes.
    let delay = runtime.load().limits.shutdown.delay;
    if !delay.is_zero() {
        tracing::info!(
            ?delay,
            "not ready; serving on for shutdown_delay before draining"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = signals.recv() => tracing::info!("another signal: draining now"),
        }
    }
    let _ = stop.send(true);
    let joining = tokio::task::spawn_blocking(move || {
        for thread in threads {
            match thread.join() {
                Ok(result) => result?,
                Err(_) => anyhow::bail!("a worker thread panicked"),
            }
        }
        Ok(())
    });
    // The drain may take up to drain_timeout; a further signal ends it.
    tokio::select! {
        joined = joining => joined,
        () = signals.recv() => {
            tracing::warn!("another signal during the drain: exiting now");
            Ok(Ok(()))
        }
    }
}

async fn reload_on_sighup(reloader: Arc<Reloader>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(err) => {
                tracing::warn!(%err, "cannot watch SIGHUP");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            let _ = reloader.reload("SIGHUP", true).await;
        }
    }
    #[cfg(not(unix))]
    let _ = reloader;
}

/// SIGTERM and SIGINT (Ctrl-C), listened to from start to exit, so that a
/// signal arriving between two waits is not lost.
struct ShutdownSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    /// Starts listening; call inside the runtime.
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(signal) => Some(signal),
                Err(err) => {
                    tracing::warn!(%err, "cannot watch {name}");
                    None
                }
            };
            Self {
                term: listen(SignalKind::terminate(), "SIGTERM"),
                interrupt: listen(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next SIGTERM or SIGINT.
    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            let Self { term, interrupt } = self;
            tokio::select! {
                () = next(term) => {}
                () = next(interrupt) => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
