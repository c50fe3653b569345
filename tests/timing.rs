//! GPU timestamps of `Profiler::set_gpu_timing`: every dispatch is attributed to its kernel,
//! passes split by copies included, and the work itself is unchanged. A test binary of its own,
//! as the switch is per device and the tests share one.

mod common;

use common::gpu;
use metalearn::gpu::Recorder;
use metalearn::kernels::vec::{self, View};

#[test]
fn timed_submission_attributes_every_dispatch() -> metalearn::Result<()> {
    let g = gpu();
    let a = g.buffer("a", 4096)?;
    let b = g.buffer("b", 4096)?;
    g.profiler().reset_gpu_time();
    g.profiler().set_gpu_timing(true);
    let mut rec = Recorder::new(g);
    vec::fill(&mut rec, View::new(&a, 0), 4096, 1.0)?;
    vec::fill(&mut rec, View::new(&a, 0), 2048, 2.0)?;
    rec.copy(&a, 0, &b, 0, 4096)?;
    vec::fill(&mut rec, View::new(&a, 0), 4096, 3.0)?;
    let done = rec.submit();
    g.profiler().set_gpu_timing(false);
    done?;
    let got: Vec<f32> = g.read(&b)?;
    assert!(got[..2048].iter().all(|&v| v == 2.0));
    assert!(got[2048..].iter().all(|&v| v == 1.0));
    let report = g.profiler().gpu_time_report();
    if g.props()
        .features
        .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
    {
        let fill = report.iter().find(|r| r.0 == "fill").expect("fill timed");
        assert_eq!(fill.1, 3);
        assert!(fill.2 >= 0.0 && fill.2.is_finite());
    } else {
        assert!(report.is_empty());
    }
    Ok(())
}
