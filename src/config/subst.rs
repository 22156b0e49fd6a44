//! `${NODE_NAME}`, `${NODE_IP}`, `${env:NAME}`, `${file:PATH}` substitution with secret tracking.
