"""The terminal player: scripted input gives the README's transcript and return."""
import io

from archer_lite.envs.play import main, play


def test_play_scripted_episode_matches_readme():
    answers = iter(["Is it an animal?", "Is it used for sports?", "Is it round?", "Is it made of metal?",
                    "Is it a basketball?", "Is it a football?"])
    out = io.StringIO()
    total = play("TwentyQuestions", seed=3, read=lambda prompt: next(answers), out=out)
    assert total == -5.0
    text = out.getvalue()
    assert "Yes! You guessed it." in text and "Return: -5" in text


def test_watch_expert_and_hint():
    out = io.StringIO()
    assert play("corridor", watch="expert", out=out) == -3.0
    inputs = iter([":hint", ":quit"])
    out = io.StringIO()
    play("corridor", read=lambda prompt: next(inputs), out=out)
    assert "expert would say: go right" in out.getvalue()


def test_unknown_env_exits_with_choices(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["NoSuchEnv"])
    assert "Available" in capsys.readouterr().err
