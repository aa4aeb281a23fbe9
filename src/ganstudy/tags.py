"""The MLflow tags ganstudy sets on runs: one registry, imported by every module that reads or writes them."""


class Tag:
    DATA, TRAIN_IMAGES, CLASSIFIER = "ganstudy.data", "ganstudy.train_images", "ganstudy.classifier"
    RUN_DIR, RESUMED_FROM = "ganstudy.run_dir", "ganstudy.resumed_from_epoch"
    DIVERGED, DIVERGED_AT = "ganstudy.diverged", "ganstudy.diverged_at"
    STUDY, ROLE = "ganstudy.study", "ganstudy.role"            # a sweep's runs: role study, trial or confirm
    INSTANCE = "ganstudy.study_instance"                        # which study of that name (storage.study_instance)
    EPOCHS = "ganstudy.epochs"                                  # the epochs the run was last trained to
    TRIAL, TRIAL_STATE = "ganstudy.trial", "ganstudy.trial_state"
    FAIL_REASON = "ganstudy.fail_reason"                        # why a trial or confirm run failed
    ARM, SEED, OVERRIDES = "ganstudy.which", "ganstudy.seed", "ganstudy.overrides_sha"  # confirmation runs
    BUDGET = "ganstudy.budget"                                  # a confirmation run's: the same epochs or time
    DEVICE = "ganstudy.device"                                  # where the run (its last start) trained: GPU:0, CPU:0
    BEST_PARAMS = "best_params"                                 # a study's parent run: its best trial's settings
