//! Fleet PKI: a CA, agent and collector certificates, revocation. (Being built.)
