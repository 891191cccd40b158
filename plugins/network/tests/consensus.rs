//! The protocol between nodes, delivered by a deterministic in-process scheduler: finality with validators
//! down, Byzantine validators, double spends, and convergence of every ledger whatever the delivery order.

use proptest::prelude::*;
use ruvector_dag::network::{Envelope, PeerId};
use ruvector_dag_network::envelope::{VerifierPolicy, now_ms};
use ruvector_dag_network::node::{Message, Node, Outgoing};
use ruvector_dag_network::privacy::{ClipParams, privatize};
use ruvector_dag_network::protocol::{
    Action, ItemId, MICRO, NetworkParams, Parameter, SharedPattern, SignedItem, ValidatorInfo, Vote,
};
use ruvector_dag_network::state::Outcome;
use ruvector_dag_network::{EnvelopeSigner, MessageKind, NodeIdentity, laplace_noise};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Nodes and the envelopes in flight between them.
struct Sim {
    nodes: Vec<Node>,
    queue: Vec<(usize, usize, Envelope)>,
    down: BTreeSet<usize>,
    rng: u64,
    delivered: Vec<(usize, usize, Envelope)>,
}

impl Sim {
    /// `validators` validators with equal stakes, then `clients` clients with 1000 rUv each.
    fn new(validators: usize, clients: usize, seed: u64) -> Self {
        let ids: Vec<Arc<NodeIdentity>> =
            (0..validators + clients).map(|_| Arc::new(NodeIdentity::generate())).collect();
        let mut params = NetworkParams::new(
            ids[..validators]
                .iter()
                .map(|id| ValidatorInfo { identity: id.public().clone(), stake: 100 * MICRO })
                .collect(),
        );
        params.genesis = ids[validators..].iter().map(|id| (id.peer_id(), 1000 * MICRO)).collect();
        params.lock_period_ms = 0;
        params.policy.settle_ms = 0;
        params.governance_threshold = 150 * MICRO;
        let params = Arc::new(params);
        let nodes = ids.into_iter().map(|id| Node::new(id, params.clone(), VerifierPolicy::default())).collect();
        let mut sim = Self { nodes, queue: Vec::new(), down: BTreeSet::new(), rng: seed | 1, delivered: Vec::new() };
        for i in 0..sim.nodes.len() {
            let hello = sim.nodes[i].hello().unwrap();
            for j in 0..sim.nodes.len() {
                if i != j {
                    sim.queue.push((j, i, hello.clone()));
                }
            }
        }
        sim
    }

    fn id(&self, i: usize) -> PeerId {
        self.nodes[i].peer_id()
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: the delivery order comes from the seed.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn route(&mut self, from: usize, out: Vec<Outgoing>) {
        if self.down.contains(&from) {
            return;
        }
        for o in out {
            match o {
                Outgoing::To(peer, env) => {
                    if let Some(j) = self.nodes.iter().position(|n| n.peer_id() == peer) {
                        self.queue.push((j, from, env));
                    }
                }
                Outgoing::All(env) => {
                    for j in 0..self.nodes.len() {
                        if j != from {
                            self.queue.push((j, from, env.clone()));
                        }
                    }
                }
                Outgoing::Clients(env) => {
                    for j in 0..self.nodes.len() {
                        if j != from && !self.nodes[j].is_validator() {
                            self.queue.push((j, from, env.clone()));
                        }
                    }
                }
            }
        }
    }

    /// Delivers everything in flight in a seeded random order; envelopes to stopped nodes are lost.
    fn run(&mut self) {
        while !self.queue.is_empty() {
            let k = (self.next_random() % self.queue.len() as u64) as usize;
            let (to, from, env) = self.queue.swap_remove(k);
            if self.down.contains(&to) {
                continue;
            }
            let sender = self.id(from);
            let out = self.nodes[to].handle(sender, &env, now_ms());
            self.delivered.push((to, from, env));
            self.route(to, out);
        }
    }

    /// Anti-entropy rounds until nothing changes.
    fn settle(&mut self) {
        self.run();
        // Each tick asks one peer: enough rounds for every node to have asked every other.
        for _ in 0..2 * self.nodes.len() {
            for i in 0..self.nodes.len() {
                if !self.down.contains(&i) {
                    let out = self.nodes[i].tick(now_ms());
                    self.route(i, out);
                }
            }
            self.run();
        }
    }

    fn submit(&mut self, node: usize, action: Action) -> ItemId {
        let (id, out) = self.nodes[node].submit(action, now_ms()).unwrap();
        self.route(node, out);
        id
    }

    fn outcomes(&self, id: &ItemId) -> Vec<Outcome> {
        (0..self.nodes.len()).filter(|i| !self.down.contains(i)).map(|i| self.nodes[i].state().outcome(id)).collect()
    }
}

fn proposal(quality: f64) -> Action {
    let v: Vec<f32> = (0..8).map(|i| ((i * 7919 + 13) % 17) as f32 - 8.0).collect();
    let pattern = privatize(&v, quality, 30, laplace_noise(1.0), ClipParams::default()).unwrap();
    Action::ProposePatterns {
        patterns: vec![SharedPattern { pattern, metadata: r#"{"attention":"topological"}"#.into() }],
        stake: 20 * MICRO,
    }
}

#[test]
fn a_proposal_finalizes_everywhere_and_pays_its_proposer() {
    let mut sim = Sim::new(4, 2, 1);
    sim.run();
    let id = sim.submit(4, proposal(0.8));
    sim.settle();
    assert_eq!(sim.outcomes(&id), vec![Outcome::Finalized; 6]);
    for n in &sim.nodes {
        let me = n.state().ledger().account(&sim.id(4));
        assert_eq!((me.pending_rewards, me.accepted), (10 * i128::from(MICRO), 1));
        assert_eq!(n.state().confidence(&id), 1.0);
    }
    // A low-quality proposal is rejected and costs the proposer the penalty.
    let bad = sim.submit(5, proposal(0.1));
    sim.settle();
    assert_eq!(sim.outcomes(&bad), vec![Outcome::Rejected; 6]);
    let acct = sim.nodes[0].state().ledger().account(&sim.id(5));
    assert_eq!(acct.balance, 995 * i128::from(MICRO));
}

#[test]
fn finality_survives_one_validator_down_and_waits_for_two() {
    let mut sim = Sim::new(4, 2, 2);
    sim.run();
    sim.down.insert(3);
    let id = sim.submit(4, proposal(0.8));
    sim.settle();
    assert_eq!(sim.outcomes(&id), vec![Outcome::Finalized; 5], "3 of 4 validators suffice");

    sim.down.insert(2);
    let second = sim.submit(4, Action::Stake { amount: 100 * MICRO });
    sim.settle();
    assert_eq!(sim.outcomes(&second), vec![Outcome::Pending; 4], "2 of 4 is not more than 2/3");

    // They come back, pull what they missed, vote, and the item finalizes; every node agrees on the ledger.
    sim.down.clear();
    sim.settle();
    assert_eq!(sim.outcomes(&second), vec![Outcome::Finalized; 6]);
    assert_eq!(sim.outcomes(&id), vec![Outcome::Finalized; 6], "the returning validators caught up");
    let ledger = sim.nodes[0].state().ledger().clone();
    assert!(sim.nodes.iter().all(|n| *n.state().ledger() == ledger));
    assert_eq!(ledger.account(&sim.id(4)).staked, 100 * i128::from(MICRO));
}

#[test]
fn a_byzantine_validator_changes_nothing() {
    let mut sim = Sim::new(4, 2, 3);
    sim.run();
    let byz = sim.nodes[3].identity().clone();
    let id = sim.submit(4, proposal(0.8));
    sim.run();
    let item = sim.nodes[0].state().item(&id).unwrap().clone();

    let mut signer = EnvelopeSigner::new(byz.clone());
    let honest: Vec<PeerId> = (0..3).map(|i| sim.id(i)).collect();
    // Equivocation: a rejection of the same item, and an endorsement of a conflicting item in the same slot
    // (forged as if from the client: its signature cannot verify, so nodes refuse it).
    let reject = Vote::sign(&byz, &item, false, "spite".into()).unwrap();
    let env = signer.sign(MessageKind::Rejection, postcard::to_stdvec(&Message::Vote(reject)).unwrap()).unwrap();
    let mut forged_item = item.clone();
    forged_item.body.action = Action::Transfer { to: sim.id(3), amount: 999 * MICRO };
    let forged_env =
        signer.sign(MessageKind::Operation, postcard::to_stdvec(&Message::Item(forged_item)).unwrap()).unwrap();
    // Forgery at the envelope level: a vote claiming to come from validator 0.
    let mut spoofed = env.clone();
    spoofed.sender = honest[0];
    for to in 0..3 {
        for e in [&env, &forged_env, &spoofed] {
            let out = sim.nodes[to].handle(if e.sender == honest[0] { honest[0] } else { byz.peer_id() }, e, now_ms());
            sim.route(to, out);
        }
    }
    // Replays: every envelope delivered so far, again.
    let replays: Vec<_> = sim.delivered.clone();
    for (to, from, env) in replays {
        let sender = sim.id(from);
        let out = sim.nodes[to].handle(sender, &env, now_ms());
        sim.route(to, out);
    }
    sim.settle();

    assert_eq!(sim.outcomes(&id), vec![Outcome::Finalized; 6]);
    for i in 0..3 {
        let stats = sim.nodes[i].stats();
        assert!(stats.envelopes.replayed > 0, "node {i} saw the replays");
        assert!(stats.envelopes.forged >= 1, "node {i} refused the spoofed envelope");
        assert!(stats.refused >= 1, "node {i} refused the forged item");
        let ledger = sim.nodes[i].state().ledger();
        assert!(ledger.byzantine.contains(&byz.peer_id()), "equivocation is proven");
        assert_eq!(ledger.account(&byz.peer_id()).balance, -1000 * i128::from(MICRO));
        assert_eq!(ledger.account(&sim.id(3)).balance, ledger.account(&byz.peer_id()).balance);
    }
}

#[test]
fn a_double_spend_never_gets_both_halves_certified() {
    for seed in 0..6 {
        let mut sim = Sim::new(4, 2, 100 + seed);
        sim.run();
        let client = sim.nodes[4].identity().clone();
        let t = now_ms();
        let a = SignedItem::sign(&client, 1, t, Action::Transfer { to: sim.id(5), amount: 800 * MICRO }).unwrap();
        let b = SignedItem::sign(&client, 1, t, Action::Transfer { to: sim.id(0), amount: 800 * MICRO }).unwrap();
        let mut signer = EnvelopeSigner::new(client.clone());
        // Each half goes first to a different pair of validators.
        for (item, targets) in [(&a, [0, 1]), (&b, [2, 3])] {
            let env = signer
                .sign(MessageKind::Operation, postcard::to_stdvec(&Message::Item(item.clone())).unwrap())
                .unwrap();
            for to in targets {
                let out = sim.nodes[to].handle(client.peer_id(), &env, now_ms());
                sim.route(to, out);
            }
        }
        sim.settle();
        let both = [a.id(), b.id()].iter().filter(|id| sim.outcomes(id)[0] == Outcome::Finalized).count();
        assert!(both <= 1, "seed {seed}: both spends finalized");
        let ledger = sim.nodes[0].state().ledger();
        assert!(ledger.account(&client.peer_id()).balance >= 0, "seed {seed}");
        assert!(sim.nodes.iter().all(|n| n.state().ledger() == ledger), "seed {seed}: ledgers differ");
    }
}

#[test]
fn stake_rewards_and_governance_follow_the_finalized_set() {
    let mut sim = Sim::new(4, 2, 4);
    sim.run();
    let p = sim.submit(4, proposal(0.9));
    sim.settle();
    let claim = sim.submit(4, Action::ClaimRewards { amount: 10 * MICRO });
    sim.settle();
    assert_eq!(sim.outcomes(&claim)[0], Outcome::Finalized, "{:?}", sim.outcomes(&p));
    let over = sim.submit(4, Action::ClaimRewards { amount: MICRO });
    sim.settle();
    assert_eq!(sim.outcomes(&over)[0], Outcome::Rejected, "nothing left to claim");
    sim.submit(4, Action::Stake { amount: 200 * MICRO });
    sim.settle();
    let change = sim.submit(4, Action::ParamChange { parameter: Parameter::MinQuality, value: 0.5 });
    sim.settle();
    assert_eq!(sim.outcomes(&change)[0], Outcome::Finalized);
    // 0.4 passes the configured 0.3 floor.
    let before = sim.submit(5, proposal(0.4));
    sim.settle();
    assert_eq!(sim.outcomes(&before)[0], Outcome::Finalized);
    sim.submit(4, Action::GovernanceVote { change, approve: true });
    sim.settle();
    let ledger = sim.nodes[1].state().ledger().clone();
    assert_eq!(ledger.passed_changes.len(), 1);
    assert_eq!(sim.nodes[1].state().policy().min_quality, 0.5);
    // Under the new policy 0.4 is too low.
    let after = sim.submit(5, proposal(0.4));
    sim.settle();
    assert_eq!(sim.outcomes(&after)[0], Outcome::Rejected);
    let acct = ledger.account(&sim.id(4));
    assert_eq!(acct.balance, (1000 + 10 - 200) * i128::from(MICRO));
    assert_eq!(acct.staked, 200 * i128::from(MICRO));
    // Validators earned the validation reward for each decided proposal they voted on consistently.
    assert!(ledger.account(&sim.id(0)).pending_rewards >= 2 * 2 * i128::from(MICRO));
}

#[test]
fn measured_improvements_pay_the_accuracy_bonus_at_their_median() {
    // Client 4 proposes; clients 5–7 stake and report what they measured; client 8 has no stake.
    let mut sim = Sim::new(4, 5, 11);
    sim.run();
    let p = sim.submit(4, proposal(0.9));
    sim.settle();
    assert_eq!(sim.outcomes(&p)[0], Outcome::Finalized);
    let report = |bp| Action::ReportImprovement { proposal: p, index: 0, improvement_bp: bp };
    for c in 5..8 {
        sim.submit(c, Action::Stake { amount: 20 * MICRO });
    }
    sim.settle();
    let bonus = |sim: &Sim| sim.nodes[0].state().ledger().account(&sim.id(4)).pending_rewards;
    let before = bonus(&sim);
    let first = sim.submit(5, report(3000));
    let second = sim.submit(6, report(7000));
    sim.settle();
    assert!([first, second].iter().all(|r| sim.outcomes(r)[0] == Outcome::Finalized));
    assert_eq!(bonus(&sim), before, "no bonus before three reports");
    // Refused: a report without stake, a second report, a report on one's own pattern, a pattern index that
    // does not exist, more than 100 %.
    let unstaked = sim.submit(8, report(9000));
    let again = sim.submit(5, report(9000));
    let own = sim.submit(4, report(9000));
    sim.settle();
    let missing = sim.submit(6, Action::ReportImprovement { proposal: p, index: 3, improvement_bp: 100 });
    sim.settle();
    let over = sim.submit(6, report(10_001));
    sim.settle();
    for r in [unstaked, again, own, missing, over] {
        assert_eq!(sim.outcomes(&r)[0], Outcome::Rejected);
    }
    let third = sim.submit(7, report(5000));
    sim.settle();
    assert_eq!(sim.outcomes(&third)[0], Outcome::Finalized);
    // Median of 30 %, 50 %, 70 %: 50 % → 10 rUv per 1 % = 500 rUv, on every node.
    assert_eq!(bonus(&sim) - before, 500 * i128::from(MICRO));
    let ledger = sim.nodes[0].state().ledger().clone();
    assert!(sim.nodes.iter().all(|n| *n.state().ledger() == ledger));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// Whatever order envelopes arrive in, every node ends with the same outcomes and the same ledger.
    #[test]
    fn ledgers_converge_whatever_the_delivery_order(seed in any::<u64>(), actions in proptest::collection::vec(0u8..4, 1..5)) {
        let mut sim = Sim::new(4, 2, seed);
        let mut ids = Vec::new();
        for (k, a) in actions.iter().enumerate() {
            let client = 4 + k % 2;
            let action = match a {
                0 => proposal(0.8),
                1 => proposal(0.1),
                2 => Action::Stake { amount: 50 * MICRO },
                _ => Action::Transfer { to: sim.id(4 + (k + 1) % 2), amount: 30 * MICRO },
            };
            // A client's next item waits for its previous one: run the network in between.
            sim.settle();
            ids.push(sim.submit(client, action));
        }
        sim.settle();
        let reference = sim.nodes[0].state().ledger().clone();
        for n in &sim.nodes {
            prop_assert_eq!(n.state().ledger(), &reference);
            for id in &ids {
                prop_assert_eq!(n.state().outcome(id), sim.nodes[0].state().outcome(id));
                prop_assert_ne!(n.state().outcome(id), Outcome::Pending);
            }
        }
    }
}
