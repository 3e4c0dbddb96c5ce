//! The egress bridge on its own (`errand sandbox bridge` is the same code):
//! `errand-egress-bridge --socket PATH [--listen ADDR] [--forward HOST:PORT]… -- PROGRAM [ARG]…`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match errand_sandbox::egress::BridgeOptions::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("errand-egress-bridge: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("errand-egress-bridge: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    match rt.block_on(errand_sandbox::egress::bridge(opts)) {
        Ok(status) => errand_sandbox::egress::exit_like(status),
        Err(e) => {
            eprintln!("errand-egress-bridge: {e}");
            std::process::exit(127);
        }
    }
}
