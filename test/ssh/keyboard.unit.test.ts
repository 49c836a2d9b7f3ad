// keyboard-interactive: the password goes to prompts that ask for a password, nothing else does.
import { strict as assert } from "assert";
import { keyboardAnswers } from "../../provider/ssh/dial";

describe("keyboard-interactive answers", () => {
  it("gives the password to password prompts only (issue 11)", () => {
    const k = keyboardAnswers(
      [
        { prompt: "Password: ", echo: false },
        { prompt: "Verification code: ", echo: false },
        { prompt: "Passcode or option (1-3): ", echo: false },
        { prompt: "(root@vps) Password:", echo: false },
        { prompt: "Username: ", echo: true },
        { prompt: "password shown as you type: ", echo: true },
        { prompt: "evil\u001b[2J prompt", echo: false },
      ],
      "s3cret",
    );
    assert.deepEqual(k.answers, ["s3cret", "", "", "s3cret", "", "", ""]);
    assert.deepEqual(k.refused, ["Verification code:", "Passcode or option (1-3):", "Username:", "password shown as you type:", "evil [2J prompt"]);
    assert.deepEqual(keyboardAnswers([{ prompt: "Password:", echo: false }], undefined).answers, [""], "no password given: nothing to answer");
  });
});
