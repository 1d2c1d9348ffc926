//! Runs a `wasm32-wasip2` command component with the gateway's engine
//! settings (Cranelift at `Speed`, epoch interruption on), for timing guest
//! code outside the plugin contract: `wasm_run FILE.wasm [ARGS...]`.
//! `NO_EPOCH=1` turns epoch interruption off, to see what its checks cost.

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

struct State {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

fn main() -> wasmtime::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(file) = args.first() else {
        eprintln!("usage: wasm_run FILE.wasm [ARGS...]");
        std::process::exit(2);
    };
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(std::env::var_os("NO_EPOCH").is_none());
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    if std::env::var_os("GATEWAY_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    let engine = Engine::new(&config)?;
    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    let component = Component::from_file(&engine, file)?;
    // The SDK links the gateway's log import; the commands timed here never call it.
    linker
        .instance(&format!("gateway:plugin/log@{}", gateway::plugin::CONTRACT))?
        .func_new("write", |_, _, _, _| Ok(()))?;
    let mut builder = WasiCtx::builder();
    builder.inherit_stdio().inherit_env().args(&args);
    let mut store = Store::new(
        &engine,
        State {
            ctx: builder.build(),
            table: ResourceTable::new(),
        },
    );
    store.set_epoch_deadline(u64::MAX / 2);
    let command = Command::instantiate(&mut store, &component, &linker)?;
    if command.wasi_cli_run().call_run(&mut store)?.is_err() {
        std::process::exit(1);
    }
    Ok(())
}
