//! A plan read from elsewhere (a file, the wire) checked for consistency before anything trusts
//! its types: every tensor a step names is in its entry's table, and every `Exec` step's
//! outputs have exactly the types the op registry infers from its inputs' types. A worker sizes
//! its memory from these types; a plan whose types disagree with its ops could make a kernel
//! allocate more than was admitted.

use genie_ir::{registry, TensorType};

use crate::plan::{ProgramPlan, Step};

/// Why a plan's types cannot be trusted. Each names the entry, device and tensor or node.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanCheckError {
    /// A step names a tensor the entry's table lacks.
    #[error("entry `{entry}` on {device}: a step names {tensor}, which is not in the tensor table")]
    UnknownTensor { entry: String, device: String, tensor: genie_ir::ValueId },
    /// An op's inference fails on the plan's types (an unknown op, wrong arguments).
    #[error("entry `{entry}` on {device}: {node} ({op}): {reason}")]
    Inference { entry: String, device: String, node: genie_ir::NodeId, op: String, reason: String },
    /// An output's type is not what its op makes.
    #[error("entry `{entry}` on {device}: {node} ({op}) output {tensor} is typed {}, the op makes {}", types.0, types.1)]
    Mismatch {
        entry: String,
        device: String,
        node: genie_ir::NodeId,
        op: String,
        tensor: genie_ir::ValueId,
        /// Declared and inferred.
        types: Box<(TensorType, TensorType)>,
    },
}

/// Check every step of every device plan of `plan` (see the module docs).
pub fn check_types(plan: &ProgramPlan) -> Result<(), PlanCheckError> {
    for entry in &plan.entries {
        let types = |v: genie_ir::ValueId| entry.tensors.get(&v).map(|t| &t.ty);
        for dp in &entry.plans {
            let at = || (entry.name.clone(), dp.device.clone());
            for step in &dp.steps {
                for tensor in step.tensors() {
                    if !entry.tensors.contains_key(&tensor) {
                        let (entry, device) = at();
                        return Err(PlanCheckError::UnknownTensor { entry, device, tensor });
                    }
                }
                let Step::Exec { node, op, args, outputs, .. } = step else { continue };
                let inferred = registry::infer(op, args, &types).map_err(|e| {
                    let (entry, device) = at();
                    PlanCheckError::Inference { entry, device, node: *node, op: op.clone(), reason: e.to_string() }
                })?;
                if inferred.len() != outputs.len() {
                    let (entry, device) = at();
                    let reason = format!("it makes {} outputs, the step has {}", inferred.len(), outputs.len());
                    return Err(PlanCheckError::Inference { entry, device, node: *node, op: op.clone(), reason });
                }
                for (tensor, want) in outputs.iter().zip(&inferred) {
                    let declared = &entry.tensors[tensor].ty;
                    if declared != want {
                        let (entry, device) = at();
                        return Err(PlanCheckError::Mismatch {
                            entry,
                            device,
                            node: *node,
                            op: op.clone(),
                            tensor: *tensor,
                            types: Box::new((declared.clone(), want.clone())),
                        });
                    }
                }
            }
        }
    }
    Ok(())
}
