"""The exercise checkers accept the solutions and reject wrong answers."""
from archer_lite.exercises import check_corridor_value, check_discounted_return


def test_discounted_return_checker():
    good = lambda rewards, gamma: sum(gamma ** t * r for t, r in enumerate(rewards))
    assert check_discounted_return(good).startswith("Correct")
    assert check_discounted_return(lambda r, g: sum(r)).startswith("Not yet")
    assert check_discounted_return(lambda r, g: 1 / 0).startswith("Not yet")


def test_corridor_value_checker():
    from archer_lite.envs.corridor import Corridor, policy_values

    env = Corridor(n_rooms=4)
    _, v = policy_values(env.transition_model(), lambda s: {"go right": 1.0}, 0.5)
    assert check_corridor_value(v[env.state_text(0)]).startswith("Correct")
    assert check_corridor_value(-2.0).startswith("Not yet")


def test_information_gain_checker():
    from archer_lite.envs.twenty_questions import load_objects
    from archer_lite.exercises import check_information_gain_question

    def best_question(candidates):
        table = load_objects()
        yes = table.values[[table.index(c) for c in candidates]].sum(0)
        return table.attributes[int(abs(2 * yes - len(candidates)).argmin())]

    assert check_information_gain_question(best_question).startswith("Correct")
    assert check_information_gain_question(lambda c: "no_such_attribute").startswith("Not yet")
