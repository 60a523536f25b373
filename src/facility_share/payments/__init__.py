"""Payments: Stripe PaymentIntents, webhooks, refunds and reconciliation; offline payments without keys."""
