//! The meta-gradient modes: which gradient paths the meta-backward keeps.

use crate::{Error, Result};

/// Which gradient paths the meta-backward keeps (see `docs/optimizers.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The optimizer's inputs (g_t and θ_t) are treated as constants: only the identity path
    /// θ_{t+1} = θ_t + u_t, the recurrent state and the loss terms are differentiated.
    FirstOrder,
    /// The θ input path is kept, the Hessian term through g_t is dropped (L2L's choice).
    Truncated,
    /// Every path: truncated plus the Hessian term H_t·ḡ_t through the optimizer's gradient
    /// input, by an exact Hessian-vector product of the model (with SGD inner steps and a
    /// learned initialisation: MAML). The meta-gradient is the true gradient of the meta-loss.
    SecondOrder,
    /// Reptile (learned initialisation only): the meta-gradient of θ0 is θ0 − mean_n θ_T,
    /// no backward pass.
    Reptile,
}

impl Mode {
    /// Parse `first-order`, `truncated`, `second-order` or `reptile`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "first-order" | "fo" => Ok(Self::FirstOrder),
            "truncated" => Ok(Self::Truncated),
            "second-order" | "so" => Ok(Self::SecondOrder),
            "reptile" => Ok(Self::Reptile),
            other => Err(Error::invalid(format!(
                "unknown meta-gradient mode '{other}'; use first-order, truncated, second-order or reptile"
            ))),
        }
    }

    /// True when the θ input path of the optimizer is differentiated (truncated and
    /// second-order modes).
    pub fn keeps_theta_path(&self) -> bool {
        matches!(self, Self::Truncated | Self::SecondOrder)
    }

    /// The name `parse` accepts.
    pub fn name(&self) -> &'static str {
        match self {
            Self::FirstOrder => "first-order",
            Self::Truncated => "truncated",
            Self::SecondOrder => "second-order",
            Self::Reptile => "reptile",
        }
    }
}
