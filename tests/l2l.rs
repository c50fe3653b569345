//! Meta-training works: the L2L LSTM optimizer, meta-trained on 10-d quadratics for a few hundred
//! outer steps, reaches a lower mean loss after 100 inner steps on held-out quadratics than SGD
//! with its best learning rate from a grid (tuned on the training family). Seeded.

mod common;

use common::shared_gpu;
use metalearn::run::{l2l_quadratics, L2lConfig};
use metalearn::Result;

#[test]
fn lstm_meta_trained_on_quadratics_beats_tuned_sgd() -> Result<()> {
    let cfg = L2lConfig {
        instances: 8,
        outer_steps: 200,
        meta_lr: 1e-2,
        eval_instances: 64,
        grid_points: 9,
        seed: 1,
    };
    let r = l2l_quadratics(shared_gpu(), &cfg, false)?;
    let last = |name: &str| {
        r.curves
            .iter()
            .find(|c| c.name.starts_with(name))
            .map(|c| c.train[100])
            .unwrap_or(f64::NAN)
    };
    let (lstm, sgd, adam) = (last("LSTM"), last("sgd"), last("adam"));
    eprintln!("held-out loss after 100 steps: LSTM {lstm:.4}, SGD {sgd:.4}, Adam {adam:.4}");
    assert_eq!(r.skipped, 0);
    assert!(lstm.is_finite() && sgd.is_finite());
    assert!(lstm < sgd, "learned {lstm} is not below tuned SGD {sgd}");
    // Meta-training reduced the meta-loss.
    let k = r.meta_losses.len();
    let first: f32 = r.meta_losses[..10].iter().sum();
    let final_: f32 = r.meta_losses[k - 10..].iter().sum();
    assert!(final_ < first, "meta-loss did not fall: {first} → {final_}");
    Ok(())
}
