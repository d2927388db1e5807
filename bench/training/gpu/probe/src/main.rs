//! Probe: does this build of candle reach a CUDA GPU? One matmul on cuda:0, checked against CPU.
use candle_core::{Device, Tensor};

fn main() {
    let a_cpu = Tensor::arange(0f32, 6f32, &Device::Cpu).and_then(|t| t.reshape((2, 3)));
    let b_cpu = Tensor::arange(0f32, 6f32, &Device::Cpu).and_then(|t| t.reshape((3, 2)));
    let (a_cpu, b_cpu) = match (a_cpu, b_cpu) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("probe: building CPU tensors failed: {e}");
            std::process::exit(2);
        }
    };
    let want = a_cpu.matmul(&b_cpu).and_then(|t| t.to_vec2::<f32>());
    let gpu = match Device::new_cuda(0) {
        Ok(d) => d,
        Err(e) => {
            // candle appends a backtrace to the error; its first line says what failed.
            let first = e.to_string().lines().next().unwrap_or_default().to_string();
            eprintln!("probe: no usable CUDA device ({first}); the cuda build links and runs, GPU untested");
            std::process::exit(3);
        }
    };
    let got = a_cpu
        .to_device(&gpu)
        .and_then(|a| b_cpu.to_device(&gpu).map(|b| (a, b)))
        .and_then(|(a, b)| a.matmul(&b))
        .and_then(|c| c.to_vec2::<f32>());
    match (want, got) {
        (Ok(w), Ok(g)) if w == g => println!("probe: cuda:0 matmul ok: {g:?}"),
        (w, g) => {
            eprintln!("probe: cuda:0 matmul mismatch or error: cpu={w:?} gpu={g:?}");
            std::process::exit(1);
        }
    }
}
