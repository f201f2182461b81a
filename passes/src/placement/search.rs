//! The search: a dynamic program over the atom order for contiguous (pipeline) cuts, then local
//! moves judged by the exact evaluation.
//!
//! The dynamic program assigns consecutive runs of atoms to devices, each device at most one run,
//! devices taken in a fixed order (several orders are tried: the spec's, fastest first, largest
//! memory first). Its segment cost is the compute of the run on that device plus the client's
//! inputs and outputs it handles; its transition cost is the bytes live across the cut over the
//! link between the two devices. Memory of a run (distinct weights, KV slots, the largest
//! activation estimate) beyond the device's capacity is the first thing minimised. For a chain
//! this is exact and the result optimal; for other graphs it is a good start that the local moves
//! (move one atom to a neighbour's device, or to a device already holding its weights) refine.
//!
//! For a program whose prefill hands state to decode, the phases are searched two ways: together
//! (one assignment for every entry) and apart (for each split of the devices into a prefill set
//! and a decode set, one dynamic program per side on its set, then local moves per side), each
//! judged by the exact evaluation, which counts the state handoff in prefill's time. The caller
//! chooses between the two bests.

use std::collections::BTreeSet;

use rayon::prelude::*;

use super::model::{better, Assign, Ctx, Eval, Kind, Side};
use super::{PhaseChoice, Policy};

/// More atoms than this are grouped into consecutive blocks for the dynamic program.
const MAX_DP_BLOCKS: usize = 384;
/// Local-move limits.
const MAX_SWEEPS: usize = 16;
const MAX_EVALS: usize = 3000;

#[derive(Clone, Copy, Debug)]
struct C {
    overflow: u64,
    frac: f64,
    time: f64,
}

impl C {
    fn plus(self, o: C) -> C {
        C { overflow: self.overflow.saturating_add(o.overflow), frac: self.frac.max(o.frac), time: self.time + o.time }
    }
    fn key(self, p: Policy) -> (u64, f64, f64) {
        match p {
            Policy::MinLatency | Policy::MinTtft | Policy::MinTpot => (self.overflow, self.time, 0.0),
            Policy::BalanceMemory => (self.overflow, self.frac, self.time),
        }
    }
}

/// All device splits are tried up to this many devices; beyond, the splits of the devices
/// ordered from compute-rich to bandwidth-rich.
const MAX_DEVICES_ALL_SPLITS: usize = 4;

/// Per-block aggregates of the entries of one side (or all), each entry's time weighted by how
/// much its call counts ([`Ctx::entry_weight`]).
struct Agg {
    /// Entries included (indices into `ctx.entries`) and their weights; per-entry tables below
    /// are indexed by position in this list.
    entries: Vec<usize>,
    weight: Vec<f64>,
    blocks: Vec<(usize, usize)>,
    /// `comp[d][b]` prefix sums of compute seconds over blocks.
    comp: Vec<Vec<f64>>,
    /// `cut[e][b]`: bytes crossing the boundary after block `b`.
    cut: Vec<Vec<u64>>,
    /// `inb[e][b]`, `outb[e][b]` prefix sums of client bytes.
    inb: Vec<Vec<u64>>,
    outb: Vec<Vec<u64>>,
    /// `need[t][i - t]`: memory of blocks `t..=i` on one device.
    need: Vec<Vec<u64>>,
}

fn aggregate(ctx: &Ctx, side: Option<Side>) -> Agg {
    let included: Vec<usize> =
        (0..ctx.entries.len()).filter(|e| side.is_none_or(|s| ctx.entries[*e].side == s)).collect();
    let weight: Vec<f64> = included.iter().map(|e| ctx.entry_weight(*e)).collect();
    let m = ctx.atoms();
    let per = m.div_ceil(MAX_DP_BLOCKS).max(1);
    let blocks: Vec<(usize, usize)> = (0..m).step_by(per).map(|s| (s, (s + per).min(m))).collect();
    let nb = blocks.len();
    let mut block_of = vec![0; m];
    for (b, &(s, t)) in blocks.iter().enumerate() {
        block_of[s..t].iter_mut().for_each(|x| *x = b);
    }
    let k = ctx.k;
    let ne = included.len();
    let mut comp = vec![vec![0.0; nb + 1]; k];
    let mut cut = vec![vec![0u64; nb]; ne];
    let mut cutm = vec![vec![0u64; nb]; ne];
    let mut inb = vec![vec![0u64; nb + 1]; ne];
    let mut outb = vec![vec![0u64; nb + 1]; ne];
    let mut local = vec![vec![0u64; nb]; ne];
    let mut in_mem = vec![vec![0u64; nb]; ne];
    let mut weights: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); nb];
    let mut consts = vec![0u64; nb];
    let mut kv = vec![0u64; nb];
    for (e, &ce) in included.iter().enumerate() {
        let ent = &ctx.entries[ce];
        let block = |n: genie_ir::NodeId| block_of[ctx.units.node_atom[ce][n.index()]];
        for n in &ent.order {
            let b = block(*n);
            for (d, c) in comp.iter_mut().enumerate() {
                c[b + 1] += weight[e] * ent.node_time[n.index() * k + d];
            }
            for o in &ent.outputs[n.index()] {
                if ent.vals[o.index()].alias.is_none() {
                    local[e][b] = local[e][b].saturating_add(ent.vals[o.index()].mem);
                }
            }
        }
        let mut diff = vec![0i128; nb + 1];
        let mut diffm = vec![0i128; nb + 1];
        for (vi, val) in ent.vals.iter().enumerate() {
            let mut cons: Vec<usize> = val.users.iter().map(|n| block(*n)).collect();
            cons.sort_unstable();
            cons.dedup();
            match &val.kind {
                Kind::UserInput => {
                    for &c in &cons {
                        inb[e][c + 1] = inb[e][c + 1].saturating_add(val.bytes);
                        in_mem[e][c] = in_mem[e][c].saturating_add(val.mem);
                    }
                }
                Kind::Weight(w) => {
                    for &c in &cons {
                        weights[c].insert(*w);
                    }
                }
                Kind::Const => {
                    for &c in &cons {
                        consts[c] = consts[c].saturating_add(val.mem);
                    }
                }
                Kind::StateInput(_) => {}
                Kind::Node(p) => {
                    let pb = block(*p);
                    let id = genie_ir::ValueId(vi as u32);
                    if ent.user_outputs.contains(&id) {
                        outb[e][pb + 1] = outb[e][pb + 1].saturating_add(val.bytes);
                    }
                    let lo = cons.iter().copied().chain([pb]).min().unwrap_or(pb);
                    let hi = cons.iter().copied().chain([pb]).max().unwrap_or(pb);
                    if hi > lo {
                        diff[lo] += val.bytes as i128;
                        diff[hi] -= val.bytes as i128;
                        diffm[lo] += val.mem as i128;
                        diffm[hi] -= val.mem as i128;
                    }
                }
            }
        }
        let (mut run, mut runm) = (0i128, 0i128);
        for b in 0..nb {
            run += diff[b];
            runm += diffm[b];
            cut[e][b] = run.max(0) as u64;
            cutm[e][b] = runm.max(0) as u64;
        }
        for b in 0..nb {
            inb[e][b + 1] = inb[e][b + 1].saturating_add(inb[e][b]);
            outb[e][b + 1] = outb[e][b + 1].saturating_add(outb[e][b]);
        }
    }
    for c in comp.iter_mut() {
        for b in 0..nb {
            c[b + 1] += c[b];
        }
    }
    // State slots live with the decode side.
    if side != Some(Side::Prefill) {
        for slot in &ctx.slots {
            if let Some(a) = slot.atom {
                kv[block_of[a]] = kv[block_of[a]].saturating_add(slot.mem);
            }
        }
    }
    let act: Vec<u64> = (0..nb)
        .map(|b| {
            (0..ne)
                .map(|e| {
                    let before = if b > 0 { cutm[e][b - 1] } else { 0 };
                    before.saturating_add(in_mem[e][b]).saturating_add(local[e][b])
                })
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut need = Vec::with_capacity(nb);
    for t in 0..nb {
        let mut seen: BTreeSet<usize> = BTreeSet::new();
        let (mut w, mut c, mut s, mut a) = (0u64, 0u64, 0u64, 0u64);
        let mut row = Vec::with_capacity(nb - t);
        for i in t..nb {
            for &x in &weights[i] {
                if seen.insert(x) {
                    w = w.saturating_add(ctx.weights[x].1);
                }
            }
            c = c.saturating_add(consts[i]);
            s = s.saturating_add(kv[i]);
            a = a.max(act[i]);
            row.push(w.saturating_add(c).saturating_add(s).saturating_add(a));
        }
        need.push(row);
    }
    Agg { entries: included, weight, blocks, comp, cut, inb, outb, need }
}

/// The dynamic program for one device order; returns the device of every atom.
fn dp(ctx: &Ctx, agg: &Agg, ord: &[usize]) -> Vec<usize> {
    let nb = agg.blocks.len();
    let kk = ord.len();
    let k = ctx.k;
    let ne = agg.entries.len();
    let client = k;
    let seg = |t: usize, i: usize, d: usize| -> C {
        let need = agg.need[t][i - t];
        let cap = ctx.cluster.devices[d].memory;
        let mut time = agg.comp[d][i + 1] - agg.comp[d][t];
        for e in 0..ne {
            time += agg.weight[e] * ctx.links[client][d].time(agg.inb[e][i + 1] - agg.inb[e][t]);
            time += agg.weight[e] * ctx.links[d][client].time(agg.outb[e][i + 1] - agg.outb[e][t]);
        }
        C { overflow: need.saturating_sub(cap), frac: need as f64 / cap as f64, time }
    };
    let trans = |from: usize, to: usize, b: usize| -> f64 {
        (0..ne).map(|e| agg.weight[e] * ctx.links[from][to].time(agg.cut[e][b])).sum()
    };
    let policy = ctx.policy;
    // best[i * kk + j]: atoms `0..i` placed, last run on ord[j].
    let mut best: Vec<Option<(C, usize, usize)>> = vec![None; (nb + 1) * kk];
    for i in 1..=nb {
        for t in 0..i {
            for j in 0..kk {
                let d = ord[j];
                let s = seg(t, i - 1, d);
                let mut cand: Option<(C, usize, usize)> = None;
                if t == 0 {
                    cand = Some((s, 0, usize::MAX));
                } else {
                    for jp in 0..j {
                        if let Some((pc, _, _)) = best[t * kk + jp] {
                            let tr = trans(ord[jp], d, t - 1);
                            let c = pc.plus(C { overflow: 0, frac: 0.0, time: tr }).plus(s);
                            if cand.is_none_or(|(x, _, _)| better(c.key(policy), x.key(policy))) {
                                cand = Some((c, t, jp));
                            }
                        }
                    }
                }
                if let Some((c, tt, jp)) = cand {
                    let slot = &mut best[i * kk + j];
                    if slot.is_none_or(|(x, _, _)| better(c.key(policy), x.key(policy))) {
                        *slot = Some((c, tt, jp));
                    }
                }
            }
        }
    }
    let mut end = None;
    for j in 0..kk {
        if let Some((c, _, _)) = best[nb * kk + j] {
            if end.is_none_or(|(x, _): (C, usize)| better(c.key(policy), x.key(policy))) {
                end = Some((c, j));
            }
        }
    }
    let mut assign = vec![ord.first().copied().unwrap_or(0); ctx.atoms()];
    let Some((_, mut j)) = end else { return assign };
    let mut i = nb;
    while i > 0 {
        let Some((_, t, jp)) = best[i * kk + j] else { break };
        for b in t..i {
            let (s, e) = agg.blocks[b];
            assign[s..e].iter_mut().for_each(|x| *x = ord[j]);
        }
        i = t;
        if jp == usize::MAX {
            break;
        }
        j = jp;
    }
    assign
}

/// Device orders to try: the spec's, fastest first, largest memory first.
fn orders(ctx: &Ctx) -> Vec<Vec<usize>> {
    let k = ctx.k;
    let devs = &ctx.cluster.devices;
    let spec: Vec<usize> = (0..k).collect();
    let mut fast = spec.clone();
    fast.sort_by(|a, b| devs[*b].peak_flops().total_cmp(&devs[*a].peak_flops()));
    let mut big = spec.clone();
    big.sort_by(|a, b| devs[*b].memory.cmp(&devs[*a].memory));
    let mut out = vec![spec];
    for o in [fast, big] {
        if !out.contains(&o) {
            out.push(o);
        }
    }
    out
}

/// The best placements found: with the phases together, and apart.
pub(crate) struct Found {
    pub together: Option<(Assign, Eval)>,
    pub apart: Option<(Assign, Eval)>,
}

impl Found {
    /// The one `choice` allows and the policy prefers (together on a tie).
    pub fn chosen(&self, choice: PhaseChoice, policy: Policy) -> Option<&(Assign, Eval)> {
        match (choice, &self.together, &self.apart) {
            (PhaseChoice::Never, t, _) => t.as_ref(),
            (PhaseChoice::Always, _, a) => a.as_ref(),
            (PhaseChoice::Auto, Some(t), Some(a)) => Some(if better(a.1.key(policy), t.1.key(policy)) { a } else { t }),
            (PhaseChoice::Auto, t, a) => t.as_ref().or(a.as_ref()),
        }
    }
}

/// Search the placements `choice` allows.
pub(crate) fn search(ctx: &Ctx, choice: PhaseChoice) -> Found {
    let together = (choice != PhaseChoice::Always).then(|| search_together(ctx));
    let apart = if choice != PhaseChoice::Never && ctx.splittable && ctx.k >= 2 && ctx.atoms() > 0 {
        search_apart(ctx)
    } else {
        None
    };
    Found { together, apart }
}

/// One assignment for every entry.
fn search_together(ctx: &Ctx) -> (Assign, Eval) {
    let policy = ctx.policy;
    if ctx.atoms() == 0 {
        let assign = Assign::together(Vec::new());
        let ev = ctx.evaluate(&assign);
        return (assign, ev);
    }
    let agg = aggregate(ctx, None);
    // Each device order's cut and evaluation is independent: evaluate them in parallel, then
    // pick in order, so ties go to the same order as sequentially.
    let candidates: Vec<(Assign, Eval)> = orders(ctx)
        .par_iter()
        .map(|ord| {
            let assign = Assign::together(dp(ctx, &agg, ord));
            let ev = ctx.evaluate(&assign);
            (assign, ev)
        })
        .collect();
    let mut best: Option<(Assign, Eval)> = None;
    for (assign, ev) in candidates {
        if best.as_ref().is_none_or(|(_, b)| better(ev.key(policy), b.key(policy))) {
            best = Some((assign, ev));
        }
    }
    let (assign, ev) = best.expect("at least one device order");
    improve(ctx, assign, ev, None)
}

/// Prefill and decode on disjoint device sets: every split of the devices (or, for many
/// devices, the splits of the compute-rich-first order), the best fit first, then local moves.
fn search_apart(ctx: &Ctx) -> Option<(Assign, Eval)> {
    let policy = ctx.policy;
    let k = ctx.k;
    let prefill = aggregate(ctx, Some(Side::Prefill));
    let decode = aggregate(ctx, Some(Side::Decode));
    let mut splits: Vec<Vec<bool>> = Vec::new();
    if k <= MAX_DEVICES_ALL_SPLITS {
        for mask in 1..(1u32 << k) - 1 {
            splits.push((0..k).map(|d| mask & (1 << d) != 0).collect());
        }
    } else {
        let devs = &ctx.cluster.devices;
        let mut by_ratio: Vec<usize> = (0..k).collect();
        let ratio = |d: usize| devs[d].peak_flops() / devs[d].bandwidth();
        by_ratio.sort_by(|a, b| ratio(*b).total_cmp(&ratio(*a)).then(a.cmp(b)));
        for n in 1..k {
            let mut in_prefill = vec![false; k];
            by_ratio[..n].iter().for_each(|d| in_prefill[*d] = true);
            splits.push(in_prefill);
        }
    }
    // Every split is searched and evaluated on its own, in parallel; the best is picked in
    // split order, so ties go to the same split as sequentially.
    let candidates: Vec<(Assign, Eval, Vec<bool>)> = splits
        .into_par_iter()
        .map(|in_prefill| {
            let side = |agg: &Agg, keep: bool| -> Vec<usize> {
                let mut best: Option<(Vec<usize>, (u64, f64, f64))> = None;
                for ord in orders(ctx) {
                    let ord: Vec<usize> = ord.into_iter().filter(|d| in_prefill[*d] == keep).collect();
                    let a = dp(ctx, agg, &ord);
                    let key = side_key(ctx, agg, &a);
                    if best.as_ref().is_none_or(|(_, b)| better(key, *b)) {
                        best = Some((a, key));
                    }
                }
                best.map(|(a, _)| a).unwrap_or_default()
            };
            let assign = Assign { sides: [side(&prefill, true), side(&decode, false)] };
            let ev = ctx.evaluate(&assign);
            (assign, ev, in_prefill)
        })
        .collect();
    let mut best: Option<(Assign, Eval, Vec<bool>)> = None;
    for (assign, ev, in_prefill) in candidates {
        if best.as_ref().is_none_or(|(_, b, _)| better(ev.key(policy), b.key(policy))) {
            best = Some((assign, ev, in_prefill));
        }
    }
    let (assign, ev, in_prefill) = best?;
    let pools = [in_prefill.clone(), in_prefill.iter().map(|p| !p).collect()];
    Some(improve(ctx, assign, ev, Some(&pools)))
}

/// The dynamic program's own objective for one side's assignment (to pick among device orders):
/// compute and memory of each run of atoms on one device.
fn side_key(ctx: &Ctx, agg: &Agg, assign: &[usize]) -> (u64, f64, f64) {
    let nb = agg.blocks.len();
    let mut total = C { overflow: 0, frac: 0.0, time: 0.0 };
    let mut t = 0;
    while t < nb {
        let d = assign[agg.blocks[t].0];
        let mut i = t;
        while i + 1 < nb && assign[agg.blocks[i + 1].0] == d {
            i += 1;
        }
        let need = agg.need[t][i - t];
        let cap = ctx.cluster.devices[d].memory;
        total = total.plus(C {
            overflow: need.saturating_sub(cap),
            frac: need as f64 / cap as f64,
            time: agg.comp[d][i + 1] - agg.comp[d][t],
        });
        t = i + 1;
    }
    total.key(ctx.policy)
}

/// Local moves judged by the exact evaluation: one atom to a neighbour's device, or to a device
/// already holding its weights. With the phases apart (`pools`: each side's devices), each
/// side's atom moves on its own and within its side's devices, so prefill and decode stay on
/// disjoint pools.
fn improve(ctx: &Ctx, mut assign: Assign, mut ev: Eval, pools: Option<&[Vec<bool>; 2]>) -> (Assign, Eval) {
    let apart = pools.is_some();
    let policy = ctx.policy;
    // Atoms sharing a weight: moving next to a copy saves a replica.
    let mut weight_atoms: Vec<Vec<usize>> = vec![Vec::new(); ctx.weights.len()];
    for (e, ent) in ctx.entries.iter().enumerate() {
        for val in &ent.vals {
            if let Kind::Weight(w) = val.kind {
                for n in &val.users {
                    let a = ctx.units.node_atom[e][n.index()];
                    if !weight_atoms[w].contains(&a) {
                        weight_atoms[w].push(a);
                    }
                }
            }
        }
    }
    let mut atom_weights: Vec<Vec<usize>> = vec![Vec::new(); ctx.atoms()];
    for (w, atoms) in weight_atoms.iter().enumerate() {
        if atoms.len() > 1 {
            for &a in atoms {
                atom_weights[a].push(w);
            }
        }
    }
    let m = ctx.atoms();
    let sides: &[usize] = if apart { &[0, 1] } else { &[0] };
    let mut evals = 0;
    for _ in 0..MAX_SWEEPS {
        let mut improved = false;
        for &side in sides {
            for a in 0..m {
                let here = &assign.sides[side];
                let mut cands: BTreeSet<usize> = BTreeSet::new();
                if a > 0 {
                    cands.insert(here[a - 1]);
                }
                if a + 1 < m {
                    cands.insert(here[a + 1]);
                }
                for &w in &atom_weights[a] {
                    for &b in &weight_atoms[w] {
                        cands.extend(assign.sides.iter().map(|s| s[b]));
                    }
                }
                // An atom that overflows its device may go anywhere.
                if ev.overflow > 0 {
                    cands.extend(0..ctx.k);
                }
                cands.remove(&here[a]);
                if let Some(pools) = pools {
                    cands.retain(|d| pools[side][*d]);
                }
                // Sequential on purpose: a move is taken at the first better candidate, and
                // evaluating an atom's other candidates in parallel cost more (wasted
                // evaluations) than it saved with one or two candidates per atom.
                for d in cands {
                    if evals >= MAX_EVALS {
                        break;
                    }
                    let old = assign.sides[side][a];
                    let moved = |assign: &mut Assign, to: usize| {
                        assign.sides[side][a] = to;
                        if !apart {
                            assign.sides[1][a] = to;
                        }
                    };
                    moved(&mut assign, d);
                    let cand = ctx.evaluate(&assign);
                    evals += 1;
                    if better(cand.key(policy), ev.key(policy)) {
                        ev = cand;
                        improved = true;
                        break;
                    }
                    moved(&mut assign, old);
                }
            }
        }
        if !improved || evals >= MAX_EVALS {
            break;
        }
    }
    (assign, ev)
}
