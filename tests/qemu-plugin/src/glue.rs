//! The plugin as QEMU sees it: installation (through the `qemu-plugin`
//! crate), the translation callback that instruments each block as
//! [`crate::plan`] says, the execution callbacks, and the report at exit.
//!
//! The execution callbacks are registered through the raw API with the
//! packed [`Action`] as their user-data word: nothing is allocated per
//! block, and many vCPUs may run one block's callbacks at once with no
//! shared mutable state but the atomic counters.

use std::ffi::{c_uint, c_void};
use std::sync::OnceLock;

use qemu_plugin::sys::{self, qemu_plugin_cb_flags, qemu_plugin_id_t, qemu_plugin_tb};
use qemu_plugin::{register, Args, HasCallbacks, Info, PluginId, Register};

use crate::config::Config;
use crate::counts::State;
use crate::plan::{plan, Action};
use crate::report;

struct Runtime {
    state: State,
    config: Config,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

struct TlbCount;

impl HasCallbacks for TlbCount {}

impl Register for TlbCount {
    fn register(&mut self, id: PluginId, args: &Args, _info: &Info) -> qemu_plugin::Result<()> {
        let config = match Config::parse(&args.raw) {
            Ok(c) => c,
            Err(e) => {
                // The crate would turn an error into a panic (an abort);
                // say what is wrong and end QEMU plainly instead.
                eprintln!("tlbcount: {e}");
                std::process::exit(1);
            }
        };
        let vcpus = qemu_plugin::qemu_plugin_n_max_vcpus().unwrap_or(1).max(1) as usize;
        let runtime = Runtime { state: State::new(vcpus), config };
        if RUNTIME.set(runtime).is_err() {
            eprintln!("tlbcount: installed twice");
            std::process::exit(1);
        }
        // SAFETY: `id` is this plugin's, and `on_translate` has the
        // signature of a translation callback.
        unsafe { sys::qemu_plugin_register_vcpu_tb_trans_cb(id, Some(on_translate)) };
        qemu_plugin::qemu_plugin_register_atexit_cb(id, |_| write_report())?;
        Ok(())
    }
}

register!(TlbCount);

/// Instruments one translated block.
unsafe extern "C" fn on_translate(_id: qemu_plugin_id_t, tb: *mut qemu_plugin_tb) {
    let Some(rt) = RUNTIME.get() else { return };
    // SAFETY: `tb` is the block QEMU is translating, valid during this call.
    let n = unsafe { sys::qemu_plugin_tb_n_insns(tb) };
    let insns: Vec<_> = (0..n)
        // SAFETY: `i` is below the block's instruction count.
        .map(|i| unsafe { sys::qemu_plugin_tb_get_insn(tb, i) })
        .collect();
    let words: Vec<u32> = insns
        .iter()
        .map(|&insn| {
            // SAFETY: `insn` is an instruction of `tb`, valid during this
            // call; its data is `size` bytes (4 for every A64 instruction).
            unsafe {
                match sys::qemu_plugin_insn_size(insn) {
                    4 => (sys::qemu_plugin_insn_data(insn) as *const u32).read_unaligned(),
                    _ => 0,
                }
            }
        })
        .collect();
    let p = plan(&words, rt.config.mode);
    let flags = qemu_plugin_cb_flags::QEMU_PLUGIN_CB_NO_REGS;
    if p.prefix > 0 {
        let prefix = Action { count: p.prefix, class: crate::decode::Class::Other };
        // SAFETY: `tb` is being translated; `on_exec` reads its user data as
        // a packed action, never as a pointer.
        unsafe { sys::qemu_plugin_register_vcpu_tb_exec_cb(tb, Some(on_exec), flags, packed(prefix)) };
    }
    for (i, action) in p.actions {
        // SAFETY: as above, for instruction `i` of the block.
        unsafe { sys::qemu_plugin_register_vcpu_insn_exec_cb(insns[i], Some(on_exec), flags, packed(action)) };
    }
}

// A packed action is 64 bits wide, and so must the user-data word be.
const _: () = assert!(usize::BITS == 64);

fn packed(a: Action) -> *mut c_void {
    a.pack() as usize as *mut c_void
}

/// Runs an action on the vCPU executing the block or instruction.
unsafe extern "C" fn on_exec(vcpu: c_uint, userdata: *mut c_void) {
    if let Some(rt) = RUNTIME.get() {
        Action::unpack(userdata as usize as u64).execute(&rt.state, vcpu);
    }
}

fn write_report() {
    let Some(rt) = RUNTIME.get() else { return };
    let (regions, unpaired) = rt.state.regions_at_exit();
    let text = report::json(rt.config.mode, &rt.state.snapshot(), &regions, unpaired);
    if let Err(e) = std::fs::write(&rt.config.out, text) {
        eprintln!("tlbcount: cannot write {}: {e}", rt.config.out.display());
    }
}
