//! Milestone 5's acceptance snippet, verbatim but for the `config` it leaves undefined.

use ruvector_dag::healing::*;

#[test]
fn milestone_m5_anomaly_detection_and_self_healing() {
    let config = HealingConfig::default();
    // Anomaly detection
    let mut detector = AnomalyDetector::new(AnomalyConfig { z_threshold: 3.0, window_size: 100 });
    // Inject anomaly
    for _ in 0..99 {
        detector.observe(1.0); // Normal
    }
    detector.observe(100.0); // Anomaly
    let anomalies = detector.detect();
    assert!(!anomalies.is_empty());
    assert!(anomalies[0].z_score > 3.0);
    // Self-healing
    let orchestrator = HealingOrchestrator::new(config);
    orchestrator.run_cycle().unwrap();
    // Verify repairs applied
    let health = orchestrator.health_report();
    assert!(health.overall_score > 0.8);
}
