//! Logging and clocks: host imports inside the gateway, std natively.

/// Writing to the gateway's structured log, tagged with the plugin's name and
/// the request id. A line over 4 KiB is cut there (and natively alike).
/// Natively, lines go to stderr.
pub mod log {
    #[cfg(target_arch = "wasm32")]
    use crate::bindings::gateway::plugin::log::{Level, write};

    #[cfg(not(target_arch = "wasm32"))]
    #[derive(Debug)]
    enum Level {
        Trace,
        Debug,
        Info,
        Warn,
        Error,
    }

    /// Natively: to stderr, cut at the host's cap like the gateway's log.
    #[cfg(not(target_arch = "wasm32"))]
    fn write(level: Level, message: &str) {
        let mut message = message.to_string();
        plugin_shared::limits::cut_log_line(&mut message);
        eprintln!("[{level:?}] {message}");
    }

    /// Logs at trace level.
    pub fn trace(message: &str) {
        write(Level::Trace, message);
    }
    /// Logs at debug level.
    pub fn debug(message: &str) {
        write(Level::Debug, message);
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        write(Level::Info, message);
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        write(Level::Warn, message);
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        write(Level::Error, message);
    }

    /// Counts one occurrence of `event` (1 to 64 characters of `a-z`, `0-9`
    /// and `_`; other names are ignored) in the gateway's metric
    /// `gateway_plugin_events_total{plugin, event}`: something worth
    /// watching that is not a failure (a response that does not match its
    /// contract, a fallback taken). Natively, counted per thread: see
    /// [`counted`].
    pub fn count(event: &str) {
        #[cfg(target_arch = "wasm32")]
        crate::bindings::gateway::plugin::log::count(event);
        #[cfg(not(target_arch = "wasm32"))]
        COUNTS.with(|counts| *counts.borrow_mut().entry(event.to_string()).or_insert(0) += 1);
    }

    #[cfg(not(target_arch = "wasm32"))]
    thread_local! {
        static COUNTS: std::cell::RefCell<std::collections::HashMap<String, u64>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }

    /// Natively (in a plugin's own tests): how many times this thread
    /// counted `event`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn counted(event: &str) -> u64 {
        COUNTS.with(|counts| counts.borrow().get(event).copied().unwrap_or(0))
    }
}

/// Time as the host grants it.
pub mod clock {
    /// Wall-clock milliseconds since the Unix epoch.
    pub fn now_millis() -> u64 {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::gateway::plugin::clock::now_millis();
        #[cfg(not(target_arch = "wasm32"))]
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    }

    /// Monotonic nanoseconds, for measuring intervals only.
    pub fn monotonic_nanos() -> u64 {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::gateway::plugin::clock::monotonic_nanos();
        #[cfg(not(target_arch = "wasm32"))]
        {
            use std::sync::OnceLock;
            static START: OnceLock<std::time::Instant> = OnceLock::new();
            let start = START.get_or_init(std::time::Instant::now);
            u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
        }
    }
}
