//! Real sockets on 127.0.0.1: validators and clients of a `LocalTestnet` over TLS 1.3 with X25519MLKEM768.

use ruvector_dag_learning::DagReasoningBank;
use ruvector_dag_network::{
    ConsensusStatus, LocalTestnet, PatternProposal, QuDagClient, laplace_noise, state::Outcome,
};
use std::time::Duration;

fn pattern(seed: u32, quality: f64) -> PatternProposal {
    // 256 dimensions: the ReasoningBank's default.
    let vector: Vec<f32> =
        (0..256u32).map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 1000.0 - 0.5).collect();
    PatternProposal {
        vector,
        metadata: serde_json::json!({ "quality": quality, "samples": 40, "settings": { "enable_nestloop": "off" } }),
        noise: laplace_noise(1.0),
    }
}

const TIMEOUT: Duration = Duration::from_secs(30);

/// The milestone's M6 snippet, on a testnet, plus a second client on another validator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milestone_snippet_on_a_local_testnet() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let testnet = LocalTestnet::start(4).await?;
    let client = QuDagClient::connect(&testnet.endpoint(0)).await?;
    assert!(client.is_connected());
    assert_eq!(client.negotiated_group().as_deref(), Some("X25519MLKEM768"));
    let other = QuDagClient::connect(&testnet.endpoint(2)).await?;

    let proposal_id = client.propose_pattern(pattern(1, 0.8)).await?;
    let status = client.wait_for_consensus(&proposal_id, TIMEOUT).await?;
    assert!(matches!(status, ConsensusStatus::Finalized));

    let since_round = 0;
    let mut reasoning_bank = DagReasoningBank::default();
    let new_patterns = client.sync_patterns(since_round).await?;
    assert_eq!(new_patterns.len(), 1);
    for pattern in new_patterns {
        reasoning_bank.import_pattern(pattern)?;
    }
    assert_eq!(reasoning_bank.len(), 1);

    // The client on validator 2 syncs the same finalized pattern.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let theirs = loop {
        let got = other.sync_patterns(0).await?;
        if !got.is_empty() || tokio::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].proposal, proposal_id.0);
    assert!(theirs[0].confidence > 2.0 / 3.0);

    let balance = client.get_balance().await?;
    assert_eq!(balance, 1000.0, "the faucet's gift");
    client.stake(100.0).await?;
    assert_eq!(client.get_balance().await?, 900.0);
    let rewards = client.claim_rewards().await?;
    assert_eq!(rewards, 10.0, "the accepted-pattern reward");
    assert_eq!(client.get_balance().await?, 910.0);
    // Spending more than the balance is refused with RV007.
    let err = client.stake(5000.0).await.unwrap_err();
    assert!(err.to_string().starts_with("RV007"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finality_with_validators_stopped_and_restarted() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut testnet = LocalTestnet::start(4).await?;
    let client = QuDagClient::connect(&testnet.endpoint(0)).await?;

    testnet.stop(3);
    let first = client.propose_pattern(pattern(2, 0.8)).await?;
    assert_eq!(client.wait_for_consensus(&first, TIMEOUT).await?, ConsensusStatus::Finalized, "3 of 4 suffice");

    testnet.stop(2);
    let second = client.propose_pattern(pattern(3, 0.8)).await?;
    assert_eq!(
        client.wait_for_consensus(&second, Duration::from_secs(2)).await?,
        ConsensusStatus::Pending,
        "2 of 4 stake is not more than 2/3"
    );

    testnet.restart(2).await?;
    testnet.restart(3).await?;
    assert_eq!(client.wait_for_consensus(&second, TIMEOUT).await?, ConsensusStatus::Finalized);
    // The restarted validators caught up on everything, including what was decided while they were down.
    for i in [2, 3] {
        let v = testnet.validator(i).unwrap();
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while v.outcome(first.0).await? != Outcome::Finalized && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let reasons: Vec<_> = v.votes(first.0).await?.into_iter().map(|v| (v.endorse, v.reason)).collect();
        assert_eq!(v.outcome(first.0).await?, Outcome::Finalized, "validator {i}: {reasons:?}");
        assert_eq!(v.outcome(second.0).await?, Outcome::Finalized, "validator {i}");
    }
    Ok(())
}
