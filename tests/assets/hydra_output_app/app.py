"""An app whose own hydra/output option names its sweep folder."""

import hydra


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg) -> None:  # noqa: ANN001
    print("lr", cfg.lr)


if __name__ == "__main__":
    main()
