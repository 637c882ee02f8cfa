//! Outbound proxy rules from `http_proxy`, `https_proxy` and `no_proxy`. (Being written.)
