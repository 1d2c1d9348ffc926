//! Changing the config while serving: a reload builds a complete new
//! [`Runtime`] off the request path and swaps it in atomically; requests in
//! flight finish on the runtime they started on. A config that fails to load
//! is rejected whole and the old runtime keeps serving.
//!
//! Reloads come from three places: a file watcher (the config file and every
//! file it references, watched through their directories so that editors that
//! write by rename and Kubernetes ConfigMaps that swap a `..data` symlink are
//! seen), `SIGHUP`, and the admin API. Watcher events about other files in
//! those directories (a log written next to the config) are ignored on the
//! watcher's thread; the rest are debounced, and a watched reload only
//! happens when the content of some input changed.

use crate::config::{Config, RestartOnly, Source};
use crate::metrics::{Metrics, metrics};
use crate::plugin::PluginEngine;
use crate::runtime::Runtime;
use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Quiet time after a file event before reloading, so a burst of writes
/// (an editor's save, a ConfigMap update) makes one reload.
const DEBOUNCE: Duration = Duration::from_millis(40);

/// The longest a reload waits for a quiet moment: a file that never stops
/// changing must not hold a reload back for ever.
const MAX_DEBOUNCE: Duration = Duration::from_millis(500);

/// The trigger of reloads the watcher starts.
const FILE_CHANGE: &str = "file change";

/// The content of every input of a config: (path, SHA-256 or `None` when it
/// cannot be read).
type Fingerprint = Vec<(PathBuf, Option<[u8; 32]>)>;

/// What the admin API shows about reloads.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// The config file.
    pub config: String,
    /// Counts successful loads, the first included.
    pub version: u64,
    /// When the serving config was loaded (Unix milliseconds).
    pub loaded_at_ms: u64,
    /// The last rejected reload, if any since the start.
    pub last_error: Option<LastError>,
}

/// A rejected reload.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastError {
    /// When (Unix milliseconds).
    pub at_ms: u64,
    /// Why, located in the file where possible.
    pub message: String,
}

struct State {
    status: Status,
    /// Inputs of the serving config and their content.
    serving: Fingerprint,
    /// The content of the last attempt, so a rejected config is not retried
    /// until something changes.
    attempted: Option<Fingerprint>,
}

/// Reloads one config file into the shared runtime.
pub struct Reloader {
    path: PathBuf,
    engine: Arc<PluginEngine>,
    runtime: Arc<ArcSwap<Runtime>>,
    serialize: tokio::sync::Mutex<()>,
    state: Mutex<State>,
    /// The `[server]` settings that need a restart, as first loaded.
    listener: RestartOnly,
    /// Wakes the watcher after a reload it did not start, so it watches the
    /// new config's inputs.
    resync: std::sync::OnceLock<mpsc::UnboundedSender<()>>,
}

impl Reloader {
    /// A reloader for `path`, whose config `config` is serving in `runtime`.
    pub fn new(
        path: PathBuf,
        source: &Source,
        config: &Config,
        engine: Arc<PluginEngine>,
        runtime: Arc<ArcSwap<Runtime>>,
    ) -> Self {
        let serving = fingerprint(&inputs(source, config));
        let listener = runtime.load().server.restart_only();
        Self {
            path: path.clone(),
            engine,
            runtime,
            serialize: tokio::sync::Mutex::new(()),
            state: Mutex::new(State {
                status: Status {
                    config: path.display().to_string(),
                    version: 1,
                    loaded_at_ms: now_ms(),
                    last_error: None,
                },
                serving,
                attempted: None,
            }),
            listener,
            resync: std::sync::OnceLock::new(),
        }
    }

    /// The reload status.
    pub fn status(&self) -> Status {
        self.lock().status.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the config again and, if it is valid, serves it. With `force`
    /// false, does nothing unless some input changed since the last attempt.
    /// Returns the serving version.
    pub async fn reload(&self, trigger: &'static str, force: bool) -> Result<u64, String> {
        let outcome = self.attempt(trigger, force).await;
        if trigger != FILE_CHANGE
            && let Some(resync) = self.resync.get()
        {
            let _ = resync.send(());
        }
        outcome
    }

    async fn attempt(&self, trigger: &'static str, force: bool) -> Result<u64, String> {
        let _one_at_a_time = self.serialize.lock().await;
        let started = Instant::now();
        let source = match Source::read(&self.path) {
            Ok(source) => source,
            Err(err) => return Err(self.rejected(trigger, err.to_string(), None)),
        };
        let config = match source.parse() {
            Ok(config) => config,
            Err(err) => {
                let attempt = fingerprint(std::slice::from_ref(&self.path));
                if !force && self.lock().attempted.as_ref() == Some(&attempt) {
                    return Err("unchanged since the last rejected attempt".into());
                }
                return Err(self.rejected(trigger, err.to_string(), Some(attempt)));
            }
        };
        let attempt = fingerprint(&inputs(&source, &config));
        if !force {
            let state = self.lock();
            if state.serving == attempt || state.attempted.as_ref() == Some(&attempt) {
                return Ok(state.status.version);
            }
        }
        let previous = self.runtime.load_full();
        let runtime =
            match crate::build(&source, &config, &self.engine, Some(previous.as_ref())).await {
                Ok(runtime) => runtime,
                Err(err) => return Err(self.rejected(trigger, err.to_string(), Some(attempt))),
            };
        let routes = runtime.routes.len();
        let restart_only = runtime.server.restart_only();
        self.runtime.store(Arc::new(runtime));
        if restart_only.listeners != self.listener.listeners {
            tracing::warn!(
                "[[listeners]] changed (one added or removed, renamed, or its listen address or TLS on/off): this takes effect at the next restart; until then the listeners bound at start keep serving with the new routes and TLS material, and a removed listener refuses new connections"
            );
        }
        if restart_only.without_listeners() != self.listener.without_listeners() {
            tracing::warn!(
                "[server] listen, header limits and timeouts changed: they take effect at the next restart"
            );
        }
        Metrics::count(&metrics().reloads, "ok");
        let mut state = self.lock();
        state.status.version += 1;
        state.status.loaded_at_ms = now_ms();
        state.serving = attempt;
        state.attempted = None;
        tracing::info!(
            trigger,
            version = state.status.version,
            routes,
            elapsed_ms = started.elapsed().as_millis(),
            "config reloaded"
        );
        Ok(state.status.version)
    }

    /// Records a rejected reload and returns its message.
    fn rejected(&self, trigger: &str, message: String, attempt: Option<Fingerprint>) -> String {
        Metrics::count(&metrics().reloads, "rejected");
        tracing::error!(trigger, error = %message, "config rejected; the previous config keeps serving");
        let mut state = self.lock();
        state.status.last_error = Some(LastError {
            at_ms: now_ms(),
            message: message.clone(),
        });
        if attempt.is_some() {
            state.attempted = attempt;
        }
        message
    }

    /// Starts watching the inputs (the watches are in place when this
    /// returns) and gives the task that reloads when they change. `None`
    /// when no watcher can be set up (logged); SIGHUP and the admin API still
    /// reload then.
    pub fn watch(self: Arc<Self>) -> Option<impl Future<Output = ()> + Send + 'static> {
        let (events, mut changed) = mpsc::unbounded_channel::<()>();
        let names = Arc::new(ArcSwap::from_pointee(BTreeSet::new()));
        let relevant = names.clone();
        let sender = events.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| concerns_inputs(&e, &relevant.load())) {
                let _ = sender.send(());
            }
        });
        let mut watcher = match watcher {
            Ok(watcher) => watcher,
            Err(err) => {
                tracing::warn!(%err, "cannot watch the config for changes; reload with SIGHUP or the admin API");
                return None;
            }
        };
        let _ = self.resync.set(events);
        let mut watched = BTreeMap::new();
        self.sync_watches(&mut watcher, &mut watched, &names);
        Some(async move {
            while changed.recv().await.is_some() {
                // Debounce: wait for a quiet moment, or at most MAX_DEBOUNCE.
                let latest = tokio::time::Instant::now() + MAX_DEBOUNCE;
                loop {
                    let quiet = (tokio::time::Instant::now() + DEBOUNCE).min(latest);
                    match tokio::time::timeout_at(quiet, changed.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_elapsed) => break,
                    }
                }
                let _ = self.reload(FILE_CHANGE, false).await;
                if self.sync_watches(&mut watcher, &mut watched, &names)
                    && let Some(again) = self.resync.get()
                {
                    // A change made before a new watch was in place is seen
                    // by one more look at the inputs.
                    let _ = again.send(());
                }
            }
        })
    }

    /// Watches the directories the inputs of the serving config and of the
    /// last rejected attempt live in (along their symlinks), and publishes the
    /// names whose events count to the watcher's filter. A directory whose
    /// identity changed (swapped by a rename) is watched again. Returns
    /// whether a watch was added after the first call.
    fn sync_watches(
        &self,
        watcher: &mut impl Watcher,
        watched: &mut BTreeMap<PathBuf, Option<(u64, u64)>>,
        names: &ArcSwap<BTreeSet<OsString>>,
    ) -> bool {
        let first = watched.is_empty();
        let mut added = false;
        let inputs: Vec<PathBuf> = {
            let state = self.lock();
            let attempted = state.attempted.iter().flatten();
            state
                .serving
                .iter()
                .chain(attempted)
                .map(|(p, _)| p.clone())
                .collect()
        };
        let (dirs, relevant) = watch_set(&inputs);
        names.store(Arc::new(relevant));
        let wanted: BTreeMap<PathBuf, Option<(u64, u64)>> = dirs
            .into_iter()
            .map(|dir| {
                let identity = identity(&dir);
                (dir, identity)
            })
            .collect();
        for (dir, identity) in &wanted {
            match watched.get(dir) {
                Some(known) if known == identity => continue,
                Some(_) => {
                    let _ = watcher.unwatch(dir);
                }
                None => {}
            }
            added = true;
            if let Err(err) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), %err, "cannot watch a config directory");
            }
        }
        for dir in watched.keys().filter(|dir| !wanted.contains_key(*dir)) {
            let _ = watcher.unwatch(dir);
        }
        *watched = wanted;
        added && !first
    }
}

/// The directories to watch for `inputs` and the names whose events count:
/// every input and every link of its symlink chain (a config that is a link
/// to the file edited, a Kubernetes ConfigMap's `..data` links) gives its
/// directory and the names of all its components (so the rename of a
/// directory on the way, like a release switch of a linked `plugins`
/// directory, counts).
fn watch_set(inputs: &[PathBuf]) -> (BTreeSet<PathBuf>, BTreeSet<OsString>) {
    /// Links followed per input, like the kernel's limit on nested links.
    const MAX_LINKS: usize = 8;
    let mut dirs = BTreeSet::new();
    let mut names = BTreeSet::new();
    for input in inputs {
        let mut path = input.clone();
        for _ in 0..=MAX_LINKS {
            let dir = directory_of(&path);
            names.extend(path.components().filter_map(|part| match part {
                std::path::Component::Normal(name) => Some(name.to_os_string()),
                _ => None,
            }));
            let Ok(target) = std::fs::read_link(&path) else {
                dirs.insert(dir);
                break;
            };
            dirs.insert(dir.clone());
            path = dir.join(target);
        }
    }
    (dirs, names)
}

/// What a directory is (device and inode), to tell when a rename swapped it.
fn identity(dir: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// The directory watched for `path`.
fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether a file event in a watched directory may have changed an input:
/// it names one of `names` (see [`watch_set`]) or a `..`-prefixed entry (the
/// symlinks a Kubernetes ConfigMap swaps), or the watcher lost track and asks
/// for a rescan. Modifications of other files (logs, editors' swap files) do
/// not.
fn concerns_inputs(event: &notify::Event, names: &BTreeSet<OsString>) -> bool {
    if event.kind.is_access() {
        return false;
    }
    event.need_rescan()
        || event.paths.is_empty()
        || event.paths.iter().any(|path| {
            path.file_name().is_none_or(|name| {
                names.contains(name) || name.as_encoded_bytes().starts_with(b"..")
            })
        })
}

/// The files a config reads: itself, its TLS certificates, keys and client CA, its
/// upstreams' CA files and client certificates and keys, its APIs' OpenAPI documents, its `.wasm` plugins and
/// `config_files`.
pub fn inputs(source: &Source, config: &Config) -> Vec<PathBuf> {
    let base = source.base_dir();
    let mut files = vec![source.path.clone()];
    let listeners = config
        .listeners
        .iter()
        .filter_map(|l| l.get_ref().tls.as_ref());
    for tls in config.server.tls.iter().chain(listeners) {
        files.extend(tls_files(tls.get_ref()).map(|file| base.join(file)));
    }
    for upstream in config.upstreams.values() {
        let upstream = upstream.get_ref();
        let files_of = [
            &upstream.ca_file,
            &upstream.client_cert,
            &upstream.client_key,
        ];
        files.extend(
            files_of
                .into_iter()
                .flatten()
                .map(|f| base.join(f.get_ref())),
        );
    }
    for api in config.apis.values() {
        files.push(base.join(api.get_ref().openapi.get_ref()));
    }
    let inherited = config.plugins.iter();
    let of_apis = config.apis.values().flat_map(|a| {
        let api = a.get_ref();
        api.plugins.iter().chain(api.bearer.iter())
    });
    let own = config
        .routes
        .iter()
        .flat_map(|r| r.get_ref().plugins.iter());
    for entry in inherited.chain(of_apis).chain(own) {
        let entry = entry.get_ref();
        let reference = entry.plugin.get_ref();
        if reference.ends_with(".wasm") {
            files.push(base.join(reference));
        }
        for file in entry.config_files.values() {
            files.push(base.join(file.get_ref()));
        }
    }
    files.sort();
    files.dedup();
    files
}

/// The files a listener's TLS settings read: every certificate and key,
/// and the client CA.
fn tls_files(tls: &crate::config::TlsConfig) -> impl Iterator<Item = &String> {
    let defaults = [&tls.cert, &tls.key].into_iter().map(|f| f.get_ref());
    let by_name = tls.certificates.iter().flat_map(|entry| {
        let entry = entry.get_ref();
        [entry.cert.get_ref(), entry.key.get_ref()]
    });
    defaults
        .chain(by_name)
        .chain(tls.client_ca.iter().map(|f| f.get_ref()))
}

fn fingerprint(files: &[PathBuf]) -> Fingerprint {
    files
        .iter()
        .map(|path| {
            let digest = std::fs::read(path)
                .ok()
                .map(|bytes| Sha256::digest(&bytes).into());
            (path.clone(), digest)
        })
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, EventKind, Flag, ModifyKind, RenameMode};

    fn event(kind: EventKind, paths: &[&str]) -> notify::Event {
        let mut event = notify::Event::new(kind);
        for path in paths {
            event = event.add_path(PathBuf::from(path));
        }
        event
    }

    #[test]
    fn only_events_about_inputs_wake_the_reloader() {
        let names: BTreeSet<OsString> = ["gateway.toml", "p.wasm"].map(OsString::from).into();
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert!(concerns_inputs(
            &event(write, &["/etc/gw/gateway.toml"]),
            &names
        ));
        assert!(concerns_inputs(&event(write, &["./p.wasm"]), &names));
        // An editor's or a deploy script's rename onto an input.
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert!(concerns_inputs(
            &event(renamed, &["/etc/gw/gateway.tmp", "/etc/gw/gateway.toml"]),
            &names
        ));
        // A ConfigMap's symlink swap.
        assert!(concerns_inputs(
            &event(renamed, &["/etc/gw/..data_tmp", "/etc/gw/..data"]),
            &names
        ));
        // Other files in the same directory.
        assert!(!concerns_inputs(
            &event(write, &["/etc/gw/gateway.log"]),
            &names
        ));
        assert!(!concerns_inputs(
            &event(
                EventKind::Create(CreateKind::File),
                &["/etc/gw/.gateway.toml.swp"]
            ),
            &names
        ));
        // Reading an input changes nothing.
        let read = EventKind::Access(notify::event::AccessKind::Any);
        assert!(!concerns_inputs(
            &event(read, &["/etc/gw/gateway.toml"]),
            &names
        ));
        // The watcher lost events: look.
        let lost = event(EventKind::Other, &[]).set_flag(Flag::Rescan);
        assert!(concerns_inputs(&lost, &names));
    }
}
