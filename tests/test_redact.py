from ganstudy.redact import mask, mask_values


def test_passwords_in_urls_are_masked_and_nothing_else_changes():
    line = ("storage=postgresql+psycopg://ganstudy:s3cr%40t@db-host:5432/optuna and "
            "http://worker:pa:ss@tracking:5000/#/x?y=1 and sqlite:///mlruns/optuna.db and user@example.org")
    assert mask(line) == ("storage=postgresql+psycopg://ganstudy:***@db-host:5432/optuna and "
                          "http://worker:***@tracking:5000/#/x?y=1 and sqlite:///mlruns/optuna.db and user@example.org")
    assert mask("https://:token@host/p") == "https://:***@host/p"
    assert mask_values({"a": "mysql://u:p@h/db", "b": 3}) == {"a": "mysql://u:***@h/db", "b": 3}
